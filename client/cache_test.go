package client_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestCacheHitMissExpiry(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 30*time.Second)
	clk := newClock()
	c, err := client.New(p.url, generous(), client.WithCache(100), client.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	first := c.Check(ctx, allowReq())
	if first.GetDecision() != chaperonev1.Decision_DECISION_ALLOW || p.decided() != 1 {
		t.Fatalf("first: %s %v, %d decisions", first.GetDecision(), codes(first), p.decided())
	}
	if got := first.GetCacheTtl().AsDuration(); got != 30*time.Second {
		t.Fatalf("server ttl %s, want 30s", got)
	}

	// Another correlation id and another stated time: the same request.
	clk.advance(10 * time.Second)
	again := allowReq()
	again.Context.CorrelationId = "c-2"
	again.Context.Time = timestamppb.Now()
	hit := c.Check(ctx, again)
	if p.decided() != 1 {
		t.Fatalf("hit reached the server: %d decisions", p.decided())
	}
	if hit.GetDecisionId() != first.GetDecisionId() || hit.GetDecision() != first.GetDecision() {
		t.Fatalf("hit %s %s, want the first answer %s", hit.GetDecision(), hit.GetDecisionId(), first.GetDecisionId())
	}
	if got := hit.GetCacheTtl().AsDuration(); got != 20*time.Second {
		t.Fatalf("hit ttl %s, want the 20s left", got)
	}

	// The caller may change what it was given; the cache keeps its own.
	hit.Decision = chaperonev1.Decision_DECISION_DENY
	hit.Obligations.MaskPaths = append(hit.Obligations.MaskPaths, "Patient.name")
	if again := c.Check(ctx, allowReq()); again.GetDecision() != chaperonev1.Decision_DECISION_ALLOW || len(again.GetObligations().GetMaskPaths()) != 0 {
		t.Fatalf("the caller's change reached the cache: %v", again)
	}

	// A decision-relevant difference misses.
	other := allowReq()
	other.Resource.Id = "o2"
	c.Check(ctx, other)
	if p.decided() != 2 {
		t.Fatalf("another resource id was answered from the cache: %d decisions", p.decided())
	}

	// Expiry: at 30s the first answer is gone.
	clk.advance(19 * time.Second)
	c.Check(ctx, allowReq())
	if p.decided() != 2 {
		t.Fatalf("1s before expiry: %d decisions, want 2", p.decided())
	}
	clk.advance(time.Second)
	renewed := c.Check(ctx, allowReq())
	if p.decided() != 3 || renewed.GetDecisionId() == first.GetDecisionId() {
		t.Fatalf("at expiry: %d decisions, want 3", p.decided())
	}

	// A DENY the server says is reusable is reused too.
	c.Check(ctx, denyReq())
	d := c.Check(ctx, denyReq())
	if d.GetDecision() != chaperonev1.Decision_DECISION_DENY || p.decided() != 4 {
		t.Fatalf("deny: %s, %d decisions, want DENY and 4", d.GetDecision(), p.decided())
	}
	want := client.Stats{Hits: 4, Misses: 4, Checks: 4}
	if got := c.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

func TestMaxTTL(t *testing.T) {
	t.Parallel()
	p := startPDP(t, time.Hour)
	clk := newClock()
	c, err := client.New(p.url, generous(), client.WithCache(10), client.WithClock(clk.Now), client.WithMaxTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t.Context(), allowReq())
	clk.advance(9 * time.Second)
	if got := c.Check(t.Context(), allowReq()).GetCacheTtl().AsDuration(); got != time.Second || p.decided() != 1 {
		t.Fatalf("ttl left %s after %d decisions, want 1s and 1", got, p.decided())
	}
	clk.advance(time.Second)
	c.Check(t.Context(), allowReq())
	if p.decided() != 2 {
		t.Fatalf("kept beyond WithMaxTTL: %d decisions", p.decided())
	}
}

func TestCacheOnlyWhatTheServerAllows(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 0)
	c, err := client.New(p.url, generous(), client.WithCache(100))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.Check(t.Context(), allowReq())
	}
	if p.decided() != 3 || client.CacheLen(c) != 0 {
		t.Fatalf("cacheTtl 0s: %d decisions, %d cached; want 3 and 0", p.decided(), client.CacheLen(c))
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	p := startPDP(t, time.Hour)
	c, err := client.New(p.url, generous(), client.WithCache(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	req := func(i int) *chaperonev1.CheckRequest {
		r := allowReq()
		r.Resource.Id = fmt.Sprintf("o%d", i)
		return r
	}
	c.Check(ctx, req(1))
	c.Check(ctx, req(2))
	c.Check(ctx, req(1)) // 1 is now the most recently used
	c.Check(ctx, req(3)) // evicts 2
	if client.CacheLen(c) != 2 || p.decided() != 3 {
		t.Fatalf("%d cached, %d decisions; want 2 and 3", client.CacheLen(c), p.decided())
	}
	c.Check(ctx, req(1))
	if p.decided() != 3 {
		t.Fatal("the most recently used entry was evicted")
	}
	c.Check(ctx, req(2))
	if p.decided() != 4 {
		t.Fatal("the least recently used entry was kept")
	}
}

func TestCacheKeepsNoErrors(t *testing.T) {
	t.Parallel()
	p := startPDP(t, time.Hour)
	c, err := client.New(p.url, generous(), client.WithCache(100))
	if err != nil {
		t.Fatal(err)
	}
	bad := allowReq()
	bad.Resource.Patient = "patient/52"
	for range 2 {
		resp := c.Check(t.Context(), bad)
		if resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || codes(resp)[0] != client.ReasonInvalidRequest {
			t.Fatalf("invalid request: %s %v", resp.GetDecision(), codes(resp))
		}
	}
	if n := p.callsTo(checkPath); n != 2 || client.CacheLen(c) != 0 {
		t.Fatalf("%d calls, %d cached; want 2 and 0", n, client.CacheLen(c))
	}
}
