package client_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// mixed is n requests, even ones allowed and odd ones denied, each about
// its own resource.
func mixed(n int) ([]*chaperonev1.CheckRequest, []chaperonev1.Decision) {
	reqs := make([]*chaperonev1.CheckRequest, n)
	want := make([]chaperonev1.Decision, n)
	for i := range reqs {
		reqs[i], want[i] = allowReq(), chaperonev1.Decision_DECISION_ALLOW
		if i%2 == 1 {
			reqs[i], want[i] = denyReq(), chaperonev1.Decision_DECISION_DENY
		}
		reqs[i].Resource.Id = fmt.Sprintf("r%d", i)
	}
	return reqs, want
}

func TestBatchCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		n          int
		cached     int // requests asked before, so answered from the cache
		invalid    []int
		wantBatch  int // BatchCheck calls that reach the server
		wantChecks int // Check calls that reach the server
	}{
		{name: "one", n: 1, wantChecks: 1},
		{name: "some", n: 10, wantBatch: 1},
		{name: "some cached", n: 10, cached: 4, wantBatch: 1},
		{name: "all cached", n: 10, cached: 10},
		{name: "over the server's limit", n: 1001, wantBatch: 1, wantChecks: 1},
		{name: "two chunks", n: 2000, wantBatch: 2},
		// One invalid request fails a BatchCheck; halves are asked again
		// down to it: 8 → 4+4 → 2+2 → 1+1.
		{name: "one invalid", n: 8, invalid: []int{5}, wantBatch: 5, wantChecks: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startPDP(t, time.Hour)
			c, err := client.New(p.url, generous(), client.WithCache(5000))
			if err != nil {
				t.Fatal(err)
			}
			reqs, want := mixed(tt.n)
			for _, i := range tt.invalid {
				reqs[i].PurposeOfUse = "treat"
			}
			if tt.cached > 0 {
				c.BatchCheck(t.Context(), reqs[:tt.cached])
				p.mu.Lock()
				clear(p.calls)
				p.mu.Unlock()
			}
			got := c.BatchCheck(t.Context(), reqs)
			if len(got) != len(reqs) {
				t.Fatalf("%d answers to %d requests", len(got), len(reqs))
			}
			for i, resp := range got {
				if isIn(i, tt.invalid) {
					if codes(resp)[0] != client.ReasonInvalidRequest || resp.GetDecision() != chaperonev1.Decision_DECISION_DENY {
						t.Errorf("invalid %d: %s %v", i, resp.GetDecision(), codes(resp))
					}
					continue
				}
				if resp.GetDecision() != want[i] {
					t.Fatalf("answer %d: %s %v, want %s", i, resp.GetDecision(), codes(resp), want[i])
				}
			}
			if b, ch := p.callsTo(batchPath), p.callsTo(checkPath); b != tt.wantBatch || ch != tt.wantChecks {
				t.Errorf("%d BatchCheck and %d Check calls, want %d and %d", b, ch, tt.wantBatch, tt.wantChecks)
			}
		})
	}
}

func isIn(i int, list []int) bool {
	for _, j := range list {
		if i == j {
			return true
		}
	}
	return false
}

// TestCoalescing: concurrent Checks within the window are sent as one
// BatchCheck, each caller getting its own answer. The window is long and
// the batch is sent when full, so the test waits on no timer.
func TestCoalescing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		n         int
		max       int
		invalid   []int
		wantBatch int
		wantCheck int
	}{
		{name: "one batch", n: 16, max: 16, wantBatch: 1},
		{name: "two batches", n: 32, max: 16, wantBatch: 2},
		{name: "one invalid", n: 4, max: 4, invalid: []int{2}, wantBatch: 3, wantCheck: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startPDP(t, time.Hour)
			c, err := client.New(p.url, generous(), client.WithBatchWindow(time.Hour), client.WithMaxBatch(tt.max))
			if err != nil {
				t.Fatal(err)
			}
			reqs, want := mixed(tt.n)
			for _, i := range tt.invalid {
				reqs[i].Subject.Id = "p1"
			}
			got := make([]*chaperonev1.CheckResponse, tt.n)
			var wg sync.WaitGroup
			for i := range reqs {
				wg.Go(func() { got[i] = c.Check(t.Context(), reqs[i]) })
			}
			wg.Wait()
			for i, resp := range got {
				if isIn(i, tt.invalid) {
					if codes(resp)[0] != client.ReasonInvalidRequest {
						t.Errorf("invalid %d: %s %v", i, resp.GetDecision(), codes(resp))
					}
					continue
				}
				if resp.GetDecision() != want[i] {
					t.Errorf("caller %d: %s %v, want %s", i, resp.GetDecision(), codes(resp), want[i])
				}
			}
			if b, ch := p.callsTo(batchPath), p.callsTo(checkPath); b != tt.wantBatch || ch != tt.wantCheck {
				t.Errorf("%d BatchCheck and %d Check calls, want %d and %d", b, ch, tt.wantBatch, tt.wantCheck)
			}
			if p.decided() != tt.n-len(tt.invalid) {
				t.Errorf("%d decisions, want %d", p.decided(), tt.n-len(tt.invalid))
			}
		})
	}
}

// TestCoalescingWindowEnds: a batch that never fills is sent when its
// window ends.
func TestCoalescingWindowEnds(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 0)
	c, err := client.New(p.url, generous(), client.WithBatchWindow(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if resp := c.Check(t.Context(), allowReq()); resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("%s %v", resp.GetDecision(), codes(resp))
	}
	if p.decided() != 1 {
		t.Fatalf("%d decisions", p.decided())
	}
}
