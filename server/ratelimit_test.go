package server_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

func TestRateLimitPerCaller(t *testing.T) {
	t.Parallel()
	k := newSigner(t, "k1")
	v := newVerifier(t, writeFile(t, t.TempDir(), "jwks.json", jwksJSON(t, k)), time.Hour)
	cfg, err := callers.LoadAuthzConfig(writeFile(t, t.TempDir(), "callers.yaml", []byte(`
callers:
  - name: bulk
    subjects: [svc-bulk]
    allow: [chaperone.v1.DecisionService]
    rateLimit: {perSecond: 1000, burst: 1000}
`)))
	if err != nil {
		t.Fatal(err)
	}
	authz, err := callers.NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const perSecond = 4 // one token back every 250ms
	limiter, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: perSecond, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	g := startGuarded(t, server.GuardConfig{JWT: v, Authorizer: authz, RateLimiter: limiter}, nil)
	hc := &http.Client{Timeout: 10 * time.Second}
	call := func(tok string, opts ...connect.ClientOption) error {
		req := connect.NewRequest(checkRequest(t))
		req.Header().Set("Authorization", "Bearer "+tok)
		_, err := chaperonev1connect.NewDecisionServiceClient(hc, g.base, opts...).Check(context.Background(), req)
		return err
	}
	small, bulk := k.sign(t, claims{sub: "svc-small"}), k.sign(t, claims{sub: "svc-bulk"})

	// Burst of 2, then refused, for either protocol.
	var refused *connect.Error
	start := time.Now()
	for i := range 20 {
		err := call(small)
		if err == nil {
			// The burst, plus what refilled while we looped (slow under -race).
			if limit := 2 + int(time.Since(start).Seconds()*perSecond); i >= limit {
				t.Fatalf("request %d allowed past the burst", i)
			}
			continue
		}
		if !errors.As(err, &refused) || refused.Code() != connect.CodeResourceExhausted {
			t.Fatalf("request %d: want resource_exhausted, got %v", i, err)
		}
		break
	}
	if refused == nil {
		t.Fatal("never rate limited")
	}
	var retry *errdetails.RetryInfo
	for _, d := range refused.Details() {
		if m, err := d.Value(); err == nil {
			if ri, ok := m.(*errdetails.RetryInfo); ok {
				retry = ri
			}
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > time.Second/perSecond {
		t.Errorf("RetryInfo detail = %v, want a delay in (0, 250ms]", retry)
	}
	if s, err := strconv.Atoi(refused.Meta().Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After = %q", refused.Meta().Get("Retry-After"))
	}
	if err := call(small, connect.WithGRPC()); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("over gRPC: want resource_exhausted, got %v", err)
	}

	// Another caller has its own bucket (and here its own, larger rate).
	for i := range 20 {
		if err := call(bulk); err != nil {
			t.Fatalf("bulk caller request %d: %v", i, err)
		}
	}

	// The limited caller recovers once a token is back.
	time.Sleep(retry.GetRetryDelay().AsDuration() + 2*time.Second/perSecond)
	if err := call(small); err != nil {
		t.Fatalf("after waiting: %v", err)
	}
}

func TestRateLimiterRetryAfter(t *testing.T) {
	t.Parallel()
	l, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: 0.5, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Allow("a", nil); err != nil {
		t.Fatal(err)
	}
	err = l.Allow("a", nil)
	var rl *callers.RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, callers.ErrRateLimited) {
		t.Fatalf("want a RateLimitError, got %v", err)
	}
	if rl.RetryAfter < 1900*time.Millisecond || rl.RetryAfter > 2*time.Second {
		t.Errorf("RetryAfter = %v, want about 2s", rl.RetryAfter)
	}
	if err := l.Allow("b", nil); err != nil {
		t.Errorf("caller b shares a's bucket: %v", err)
	}
	if err := l.Allow("a", &callers.RateSpec{}); err != nil {
		t.Errorf("an unlimited spec was limited: %v", err)
	}
	if _, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: -1}); err == nil {
		t.Error("negative rate accepted")
	}
}
