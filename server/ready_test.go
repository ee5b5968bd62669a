package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadiness: /readyz and gRPC health follow the dependencies (here a
// consent store that can be switched off and an audit log whose sink
// fails), /healthz stays liveness.
func TestReadiness(t *testing.T) {
	t.Parallel()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	var storeDown atomic.Bool
	l := audit.New(downSink{}, audit.WithSyncDelay(0))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = l.Close(ctx)
	})
	var auditOn atomic.Bool
	hs := server.New(eng, v,
		server.WithReadiness("consent-store", func(context.Context) error {
			if storeDown.Load() {
				return errors.New("dial tcp 10.0.0.7:6379: refused")
			}
			return nil
		}),
		server.WithReadiness("audit", func(context.Context) error {
			if !auditOn.Load() {
				return nil
			}
			return l.Healthy()
		}),
	).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()

	want := func(step string, ready bool, naming string) {
		t.Helper()
		code, body := get(t, base+"/readyz")
		if (code == http.StatusOK) != ready || (!ready && code != http.StatusServiceUnavailable) {
			t.Errorf("%s: /readyz %d %q, want ready=%v", step, code, body, ready)
		}
		if naming != "" && !strings.Contains(body, naming) {
			t.Errorf("%s: /readyz %q does not name %s", step, body, naming)
		}
		if strings.Contains(body, "10.0.0.7") {
			t.Errorf("%s: /readyz shows an error's detail: %q", step, body)
		}
		st := grpcHealth(t, base)
		if (st == healthpb.HealthCheckResponse_SERVING) != ready {
			t.Errorf("%s: gRPC health %v, want ready=%v", step, st, ready)
		}
		if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("%s: /healthz %d: liveness must not follow dependencies", step, code)
		}
	}
	want("all up", true, "revision=")
	storeDown.Store(true)
	want("consent store down", false, "consent-store")
	storeDown.Store(false)
	want("consent store back", true, "")

	// A decision makes the audit log try its failing sink.
	auditOn.Store(true)
	_ = l.Record(context.Background(), "test", checkRequest(t), nil)
	deadline := time.Now().Add(10 * time.Second)
	for l.Healthy() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	want("audit sink failing", false, "audit")
}
