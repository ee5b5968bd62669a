package client_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestCheckAgainstServer(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 0)
	c, err := client.New(p.url, generous())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *chaperonev1.CheckRequest
		want chaperonev1.Decision
		code string
	}{
		{"allow", allowReq(), chaperonev1.Decision_DECISION_ALLOW, "POLICY_PERMIT"},
		{"deny", denyReq(), chaperonev1.Decision_DECISION_DENY, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := c.Check(t.Context(), tt.req)
			if resp.GetDecision() != tt.want {
				t.Fatalf("decision %s %v, want %s", resp.GetDecision(), codes(resp), tt.want)
			}
			if resp.GetDecisionId() == "" {
				t.Error("no decision id")
			}
			t.Logf("%v", codes(resp))
		})
	}
}

// TestGRPC: the same client over gRPC (HTTP/2 without TLS).
func TestGRPC(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 0)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	c, err := client.New(p.url, generous(), client.WithGRPC(), client.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	if resp := c.Check(t.Context(), allowReq()); resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("%s %v", resp.GetDecision(), codes(resp))
	}
	got := c.BatchCheck(t.Context(), []*chaperonev1.CheckRequest{allowReq(), denyReq()})
	if got[0].GetDecision() != chaperonev1.Decision_DECISION_ALLOW || got[1].GetDecision() != chaperonev1.Decision_DECISION_DENY {
		t.Fatalf("%s %s", got[0].GetDecision(), got[1].GetDecision())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.headers {
		if !strings.HasPrefix(h.Get("Content-Type"), "application/grpc") {
			t.Errorf("content type %q", h.Get("Content-Type"))
		}
	}
}

// TestNilRequests: a nil request is invalid input, answered without a
// call, and does not disturb the others of a batch.
func TestNilRequests(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 0)
	c, err := client.New(p.url, generous(), client.WithCache(10))
	if err != nil {
		t.Fatal(err)
	}
	if resp := c.Check(t.Context(), nil); resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || codes(resp)[0] != client.ReasonInvalidRequest {
		t.Fatalf("nil: %s %v", resp.GetDecision(), codes(resp))
	}
	got := c.BatchCheck(t.Context(), []*chaperonev1.CheckRequest{nil, allowReq(), nil})
	if codes(got[0])[0] != client.ReasonInvalidRequest || codes(got[2])[0] != client.ReasonInvalidRequest {
		t.Fatalf("nil entries: %v %v", codes(got[0]), codes(got[2]))
	}
	if got[1].GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("the valid entry: %s %v", got[1].GetDecision(), codes(got[1]))
	}
	if p.callsTo(checkPath) != 1 || p.callsTo(batchPath) != 0 {
		t.Fatalf("%d Check and %d BatchCheck calls, want the valid request alone as a Check", p.callsTo(checkPath), p.callsTo(batchPath))
	}
}
