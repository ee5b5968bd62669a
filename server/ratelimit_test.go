package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/chaperone-pdp/chaperone/callers"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
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
	// The limiter's clock moves only when the test says so.
	var clock atomic.Int64
	clock.Store(frozen().UnixNano())
	limiter, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: perSecond, Burst: 2},
		callers.WithClock(func() time.Time { return time.Unix(0, clock.Load()) }))
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
	for i := range 20 {
		err := call(small)
		if err == nil {
			if i >= 2 {
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
	clock.Add(int64(retry.GetRetryDelay().AsDuration() - time.Millisecond))
	if err := call(small); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("just before the retry delay: %v", err)
	}
	clock.Add(int64(time.Millisecond))
	if err := call(small); err != nil {
		t.Fatalf("after the retry delay: %v", err)
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

// frozen is a clock that never moves: a bucket never refills, so what a
// test counts is exactly what the burst allows.
func frozen() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) }

func batchOf(t *testing.T, n int) *chaperonev1.BatchCheckRequest {
	b := &chaperonev1.BatchCheckRequest{}
	for range n {
		b.Requests = append(b.Requests, checkRequest(t))
	}
	return b
}

// TestRateLimitCountsDecisions: a BatchCheck of n spends n tokens, so
// whatever mix of Check and BatchCheck a caller sends, the decisions
// answered never exceed the bucket (before: one token per request, and
// --rate-limit 2 let 11,000 decisions through in 5 s).
func TestRateLimitCountsDecisions(t *testing.T) {
	t.Parallel()
	const burst = 50
	limiter, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: 2, Burst: burst}, callers.WithClock(frozen))
	if err != nil {
		t.Fatal(err)
	}
	g := startGuarded(t, server.GuardConfig{RateLimiter: limiter}, nil)
	client := chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second}, g.base)
	ctx := context.Background()

	// Larger than the burst: refused whatever the bucket holds.
	_, err = client.BatchCheck(ctx, connect.NewRequest(batchOf(t, 1000)))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("BatchCheck of 1000 with a burst of %d: %v", burst, err)
	}
	// The refused batch spent nothing: a batch pays for all its decisions
	// at once, or for none.
	answered := 0
	for i, n := range []int{20, 1, 20, 7, 20, 1, 3, 1} {
		var err error
		if n == 1 {
			_, err = client.Check(ctx, connect.NewRequest(checkRequest(t)))
		} else {
			var resp *connect.Response[chaperonev1.BatchCheckResponse]
			resp, err = client.BatchCheck(ctx, connect.NewRequest(batchOf(t, n)))
			if err == nil && len(resp.Msg.GetResponses()) != n {
				t.Fatalf("request %d: %d responses for %d requests", i, len(resp.Msg.GetResponses()), n)
			}
		}
		switch {
		case err == nil:
			answered += n
		case connect.CodeOf(err) != connect.CodeResourceExhausted:
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if answered != burst {
		t.Errorf("%d decisions answered from a bucket of %d, want all of it and no more", answered, burst)
	}
	if _, err := client.Check(ctx, connect.NewRequest(checkRequest(t))); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("a Check after the bucket ran dry: %v", err)
	}
}

// TestRateLimitAnonymousPerAddress: without authentication, each remote
// address has a bucket of its own (before: one bucket shared by everyone).
func TestRateLimitAnonymousPerAddress(t *testing.T) {
	t.Parallel()
	limiter, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: 1, Burst: 2}, callers.WithClock(frozen))
	if err != nil {
		t.Fatal(err)
	}
	g := startGuarded(t, server.GuardConfig{RateLimiter: limiter}, nil)
	from := func(ip string) chaperonev1connect.DecisionServiceClient {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}, g.base)
	}
	ctx := context.Background()
	a, b := from("127.0.0.1"), from("127.0.0.2")
	for i := range 2 {
		if _, err := a.Check(ctx, connect.NewRequest(checkRequest(t))); err != nil {
			t.Fatalf("127.0.0.1 request %d: %v", i, err)
		}
	}
	if _, err := a.Check(ctx, connect.NewRequest(checkRequest(t))); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("127.0.0.1 past its burst: %v", err)
	}
	for i := range 2 {
		if _, err := b.Check(ctx, connect.NewRequest(checkRequest(t))); err != nil {
			t.Fatalf("127.0.0.2 request %d (its own bucket): %v", i, err)
		}
	}
}

func TestLimitKey(t *testing.T) {
	t.Parallel()
	anon := &callers.Caller{ID: callers.AnonymousID, Anonymous: true}
	for _, tc := range []struct {
		caller *callers.Caller
		addr   string
		want   string
	}{
		{anon, "127.0.0.1:5000", "addr:127.0.0.1"},
		{anon, "127.0.0.1:6000", "addr:127.0.0.1"},
		{anon, "[::ffff:10.0.0.1]:1", "addr:10.0.0.1"},
		{anon, "[2001:db8:1:2:3:4:5:6]:443", "addr:2001:db8:1:2::/64"},
		{anon, "[2001:db8:1:2:ffff::1]:443", "addr:2001:db8:1:2::/64"},
		{&callers.Caller{ID: "svc-a"}, "127.0.0.1:1", "svc-a"},
	} {
		if got := callers.LimitKey(tc.caller, tc.addr); got != tc.want {
			t.Errorf("LimitKey(%s, %s) = %q, want %q", tc.caller.ID, tc.addr, got, tc.want)
		}
	}
}
