package bundles_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/engine"
)

// target records activations.
type target struct {
	mu        sync.Mutex
	revisions []string
}

func (t *target) Activate(b *engine.Bundle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revisions = append(t.revisions, b.Revision())
}

func (t *target) activated() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.revisions...)
}

func archiveBytes(t *testing.T, dir string, by ...signer) []byte {
	t.Helper()
	a := build(t, dir)
	for _, s := range by {
		if err := a.Sign(s.priv, ""); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestLoaderSources(t *testing.T) {
	t.Parallel()
	alice := newSigner(t)
	trusted := bundles.WithTrustedKeys([]bundles.PublicKey{alice.pub}, 1)
	file := func(data []byte) func(t *testing.T) bundles.Source {
		return func(t *testing.T) bundles.Source {
			p := filepath.Join(t.TempDir(), "b.tar.gz")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return bundles.FileSource(p)
		}
	}
	dir := func(d string) func(t *testing.T) bundles.Source {
		return func(*testing.T) bundles.Source { return bundles.DirSource(d, os.DirFS(d)) }
	}
	for _, tc := range []struct {
		name    string
		source  func(t *testing.T) bundles.Source
		opts    []bundles.LoaderOption
		wantErr bool
		signers int
	}{
		{name: "signed file with key", source: file(archiveBytes(t, "testdata/v1", alice)), opts: []bundles.LoaderOption{trusted}, signers: 1},
		{name: "unsigned file with key", source: file(archiveBytes(t, "testdata/v1")), opts: []bundles.LoaderOption{trusted}, wantErr: true},
		{name: "unsigned file without key", source: file(archiveBytes(t, "testdata/v1"))},
		{name: "policy directory without key", source: dir("testdata/v1")},
		{name: "policy directory with key", source: dir("testdata/v1"), opts: []bundles.LoaderOption{trusted}, wantErr: true},
		{name: "directory that does not compile", source: dir("../engine/testdata/badcedar"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := &target{}
			l := bundles.NewLoader(tg, tc.source(t), tc.opts...)
			err := l.Load(context.Background())
			st := l.Status()
			if tc.wantErr {
				if err == nil || len(tg.activated()) != 0 || st.LastError == "" || st.Revision != "" {
					t.Fatalf("err = %v, activated %v, status %+v; want refused", err, tg.activated(), st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tg.activated(); len(got) != 1 || got[0] != "2026.01-1" {
				t.Errorf("activated %v", got)
			}
			if st.Revision != "2026.01-1" || st.Name != "bundles-test" || st.Digest == "" || len(st.Signers) != tc.signers || st.LastError != "" {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestLoaderKeepsLastGoodBundle(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(p, archiveBytes(t, "testdata/v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := &target{}
	l := bundles.NewLoader(tg, bundles.FileSource(p))
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	raw := archiveBytes(t, "testdata/v2")
	tampered := unpack(t, raw)
	tampered["care.cedar"].Data[0] ^= 0x20
	bad, err := bundles.ReadDir(tampered)
	if err != nil {
		t.Fatal(err)
	}
	badRaw, err := bad.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, badRaw, 0o644); err != nil {
		t.Fatal(err)
	}
	err = l.Load(context.Background())
	var ve *bundles.VerifyError
	if !errors.As(err, &ve) || ve.File != "care.cedar" {
		t.Fatalf("err = %v, want a verify error naming care.cedar", err)
	}
	st := l.Status()
	if got := tg.activated(); len(got) != 1 || st.Revision != "2026.01-1" || st.LastError == "" {
		t.Errorf("activated %v, status %+v", got, st)
	}
}

func TestURLSourceUsesETag(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		body     = archiveBytes(t, "testdata/v1")
		etag     = `"v1"`
		requests atomic.Int64
		notMod   atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("If-None-Match") == etag {
			notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	tg := &target{}
	l := bundles.NewLoader(tg, bundles.URLSource(srv.URL, srv.Client()))
	ctx := context.Background()
	for range 3 {
		if err := l.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := tg.activated(); len(got) != 1 || notMod.Load() != 2 {
		t.Fatalf("activated %v, %d not-modified answers; want one activation, two 304s", got, notMod.Load())
	}
	mu.Lock()
	body, etag = archiveBytes(t, "testdata/v2"), `"v2"`
	mu.Unlock()

	// Run polls until the new revision is active (bounded).
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { l.Run(runCtx, 5*time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for l.Status().Revision != "2026.01-2" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := l.Status().Revision; got != "2026.01-2" {
		t.Fatalf("revision %s after polling, want 2026.01-2", got)
	}
}

func TestDirSourceNoticesChanges(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"manifest.yaml", "care.cedar"} {
		data, err := os.ReadFile(filepath.Join("testdata/v1", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := bundles.DirSource(dir, os.DirFS(dir))
	ctx := context.Background()
	if _, err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(ctx); !errors.Is(err, bundles.ErrNotModified) {
		t.Fatalf("second fetch = %v, want ErrNotModified", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte("name: x\nrevision: \"2\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := src.Fetch(ctx)
	if err != nil {
		t.Fatalf("fetch after a change = %v", err)
	}
	b, err := a.Compile()
	if err != nil || b.Revision() != "2" {
		t.Fatalf("compile = %v, %v", b, err)
	}
}

// TestFileSourceSeesSameSizeReplacement: a bundle file replaced by another
// of the same size with the same modification time (a re-signed bundle
// written within the file system's clock tick) is read again, not taken
// as unchanged.
func TestFileSourceSeesSameSizeReplacement(t *testing.T) {
	t.Parallel()
	alice := newSigner(t)
	good := archiveBytes(t, "testdata/v1", alice)
	// Same size, other bytes: a tampered copy that must be refused.
	other := append([]byte(nil), good...)
	other[len(other)/2] ^= 0xff
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(p, good, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	l := bundles.NewLoader(&target{}, bundles.FileSource(p), bundles.WithTrustedKeys([]bundles.PublicKey{alice.pub}, 1))
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := l.Load(context.Background()); err == nil {
		t.Fatal("a tampered bundle of the same size and time as the active one was taken as unchanged")
	}
}

// TestLoaderRefusesStaticCheckFailures: a bundle whose policies fail the
// engine's static checks (here a respelt context attribute) is refused at
// load and the last good bundle keeps deciding; the status names the file
// and line.
func TestLoaderRefusesStaticCheckFailures(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{}
	src := os.DirFS("testdata/v1")
	for _, name := range []string{"manifest.yaml", "care.cedar", "support.rego"} {
		data, err := fs.ReadFile(src, name)
		if err != nil {
			t.Fatal(err)
		}
		fsys[name] = &fstest.MapFile{Data: data, Mode: 0o644}
	}
	tg := &target{}
	l := bundles.NewLoader(tg, bundles.DirSource("v1", fsys))
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	fsys["care.cedar"] = &fstest.MapFile{Data: []byte(strings.Replace(string(fsys["care.cedar"].Data),
		"context.purposeOfUse", "context.purposOfUse", 1)), Mode: 0o644}
	err := l.Load(context.Background())
	var sce *engine.StaticCheckError
	if !errors.As(err, &sce) {
		t.Fatalf("err = %v, want a static check error", err)
	}
	st := l.Status()
	if got := tg.activated(); len(got) != 1 || st.Revision != "2026.01-1" || !strings.Contains(st.LastError, "care.cedar:4:16: ") {
		t.Errorf("activated %v, status %+v", got, st)
	}
}
