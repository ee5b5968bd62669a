package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/engine"
)

// writeBundle builds a policy directory into path, signed by key when not nil.
func writeBundle(t *testing.T, dir, path string, key ed25519.PrivateKey) {
	t.Helper()
	a, err := bundles.Build(context.Background(), os.DirFS(dir), bundles.BuildOptions{SkipTests: true})
	if err != nil {
		t.Fatal(err)
	}
	if key != nil {
		if err := a.Sign(key, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeArchive(path, a); err != nil {
		t.Fatal(err)
	}
}

func TestBundleFlagsStart(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := bundles.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(tmp, "key.pub.pem")
	if err := os.WriteFile(keyFile, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(tmp, "signed.tar.gz")
	writeBundle(t, "../../bundles/testdata/v1", signed, priv)
	unsigned := filepath.Join(tmp, "unsigned.tar.gz")
	writeBundle(t, "../../bundles/testdata/v1", unsigned, nil)

	for _, tc := range []struct {
		name     string
		args     []string
		wantRev  string // "" : start fails
		wantCode int
	}{
		{name: "embedded", args: nil, wantRev: "2026.11.30-1"},
		{name: "policy directory", args: []string{"--bundle", "../../bundles/testdata/v2"}, wantRev: "2026.01-2"},
		{name: "signed with key", args: []string{"--bundle", signed, "--verify-key", keyFile}, wantRev: "2026.01-1"},
		{name: "unsigned with key", args: []string{"--bundle", unsigned, "--verify-key", keyFile}, wantCode: exitFailed},
		{name: "key without bundle", args: []string{"--verify-key", keyFile}, wantCode: exitUsage},
		{name: "more signatures than keys", args: []string{"--bundle", signed, "--verify-key", keyFile, "--min-signatures", "2"}, wantCode: exitUsage},
		{name: "missing file", args: []string{"--bundle", filepath.Join(tmp, "nope.tar.gz")}, wantCode: exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			bf := addBundleFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			eng := engine.New(nil)
			opt, stop, err := bf.start(context.Background(), eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tc.wantRev == "" {
				var ee *exitError
				if !errors.As(err, &ee) || ee.code != tc.wantCode {
					t.Fatalf("start = %v, want exit code %d", err, tc.wantCode)
				}
				if eng.Bundle() != nil {
					t.Errorf("a bundle was activated: %s", eng.Bundle().Revision())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			if opt == nil || eng.Bundle() == nil || eng.Bundle().Revision() != tc.wantRev {
				t.Fatalf("active bundle %v, want %s", eng.Bundle(), tc.wantRev)
			}
		})
	}
}

// TestBundleFlagsWatch replaces the bundle file under a running watcher and
// waits (bounded) for the new revision; a bad file in between is refused.
func TestBundleFlagsWatch(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	writeBundle(t, "../../bundles/testdata/v1", path, nil)
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bf := addBundleFlags(fs)
	if err := fs.Parse([]string{"--bundle", path, "--bundle-poll-interval", "5ms"}); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(nil)
	_, stop, err := bf.start(context.Background(), eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	waitFor := func(rev string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for eng.Bundle().Revision() != rev && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := eng.Bundle().Revision(); got != rev {
			t.Fatalf("revision %s, want %s", got, rev)
		}
	}
	if err := os.WriteFile(path+".tmp", []byte("not a bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	waitFor("2026.01-1")
	writeBundle(t, "../../bundles/testdata/v2", path, nil)
	waitFor("2026.01-2")
}
