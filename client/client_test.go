package client_test

import (
	"context"
	"testing"
	"time"

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
	_ = context.Background
	_ = time.Second
}
