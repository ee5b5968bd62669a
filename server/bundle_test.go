package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// signedBundle builds a policy directory of the bundles tests and signs it
// with key (unsigned when key is nil).
func signedBundle(t *testing.T, dir string, key ed25519.PrivateKey) []byte {
	t.Helper()
	a, err := bundles.Build(context.Background(), os.DirFS(dir), bundles.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if key != nil {
		if err := a.Sign(key, "test"); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// replace writes data to path atomically, as a deployment would.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestBundleHotSwapUnderLoad swaps two signed bundles repeatedly, and
// offers bad ones in between, while loopback clients send Checks: no call
// fails, and every decision is the one its reported revision makes.
func TestBundleHotSwapUnderLoad(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v1 := signedBundle(t, "../bundles/testdata/v1", priv)
	v2 := signedBundle(t, "../bundles/testdata/v2", priv)
	bad := map[string][]byte{
		"unsigned":      signedBundle(t, "../bundles/testdata/v2", nil),
		"untrusted key": signedBundle(t, "../bundles/testdata/v2", otherKey),
		"not a bundle":  []byte("garbage"),
	}
	// The billing request is allowed by v1 and denied by v2.
	want := map[string]chaperonev1.Decision{
		"2026.01-1": chaperonev1.Decision_DECISION_ALLOW,
		"2026.01-2": chaperonev1.Decision_DECISION_DENY,
	}

	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	replace(t, path, v1)
	eng := engine.New(noConsents{})
	// The swaps go back and forth between two revisions: downgrades,
	// allowed deliberately here.
	loader := bundles.NewLoader(eng, bundles.FileSource(path),
		bundles.WithTrustedKeys([]bundles.PublicKey{{ID: "test", Key: pub}}, 1), bundles.WithAllowDowngrade(true))
	if err := loader.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(eng, v, server.WithBundleService(loader)).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()
	httpClient := &http.Client{Timeout: 10 * time.Second}
	client := chaperonev1connect.NewDecisionServiceClient(httpClient, base)
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/b1", Roles: []string{"billing"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Claim", Id: "cl1"},
		PurposeOfUse: "HOPERAT",
	}

	var (
		stop       atomic.Bool
		wg         sync.WaitGroup
		calls      atomic.Int64
		failures   atomic.Int64
		mismatches atomic.Int64
		seen       sync.Map
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := client.Check(context.Background(), connect.NewRequest(req))
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("check: %v", err)
					return
				}
				rev := resp.Msg.GetBundleRevision()
				seen.Store(rev, true)
				if d, ok := want[rev]; !ok || d != resp.Msg.GetDecision() {
					mismatches.Add(1)
					t.Errorf("revision %q decided %v", rev, resp.Msg.GetDecision())
					return
				}
			}
		}()
	}

	ctx := context.Background()
	const swaps = 20
	for i := range swaps {
		next, rev := v2, "2026.01-2"
		if i%2 == 1 {
			next, rev = v1, "2026.01-1"
		}
		replace(t, path, next)
		if err := loader.Load(ctx); err != nil {
			t.Fatalf("swap %d: %v", i, err)
		}
		if got := loader.Status().Revision; got != rev {
			t.Fatalf("swap %d: active %s, want %s", i, got, rev)
		}
		if i%5 == 0 {
			for name, data := range bad {
				replace(t, path, data)
				if err := loader.Load(ctx); err == nil {
					t.Fatalf("%s bundle was activated", name)
				}
				st := loader.Status()
				if st.Revision != rev || st.LastError == "" || st.LastErrorAt.IsZero() {
					t.Fatalf("after a %s bundle: status %+v, want %s still active with the error", name, st, rev)
				}
				if err := loader.Load(ctx); err != nil {
					t.Fatalf("an unchanged bad bundle was loaded again: %v", err)
				}
			}
			replace(t, path, next) // same bytes as the active bundle
			if err := loader.Load(ctx); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	if calls.Load() == 0 || failures.Load() != 0 || mismatches.Load() != 0 {
		t.Fatalf("%d calls, %d failures, %d decisions not matching their revision", calls.Load(), failures.Load(), mismatches.Load())
	}
	for rev := range want {
		if _, ok := seen.Load(rev); !ok {
			t.Errorf("no response from revision %s in %d calls", rev, calls.Load())
		}
	}

	bs := chaperonev1connect.NewBundleServiceClient(httpClient, base)
	st, err := bs.Status(ctx, connect.NewRequest(&chaperonev1.BundleServiceStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.GetActiveRevision() != eng.Bundle().Revision() || st.Msg.GetLastError() != "" ||
		len(st.Msg.GetSigners()) != 1 || st.Msg.GetSource() != path || st.Msg.GetLoadedAt() == nil {
		t.Errorf("status = %v", st.Msg)
	}
	t.Logf("%d checks during %d swaps", calls.Load(), swaps)
}

func TestBundleServiceStatusReportsLastError(t *testing.T) {
	t.Parallel()
	eng := engine.New(noConsents{})
	path := filepath.Join(t.TempDir(), "missing.tar.gz")
	loader := bundles.NewLoader(eng, bundles.FileSource(path),
		bundles.WithLoaderClock(func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }))
	if err := loader.Load(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("load = %v, want not exist", err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(eng, v, server.WithBundleService(loader)).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	bs := chaperonev1connect.NewBundleServiceClient(&http.Client{Timeout: 10 * time.Second}, "http://"+ln.Addr().String())
	st, err := bs.Status(context.Background(), connect.NewRequest(&chaperonev1.BundleServiceStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.GetActiveRevision() != "" || st.Msg.GetLastError() == "" ||
		!st.Msg.GetLastErrorAt().AsTime().Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || st.Msg.GetLoadedAt() != nil {
		t.Errorf("status = %v", st.Msg)
	}
}
