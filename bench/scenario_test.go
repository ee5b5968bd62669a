package bench_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/bench/load"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestReferenceScenario decides the reference scenario in-process against
// the reference bundle and logs each decision (go test -v -run
// ReferenceScenario ./bench/). The bundle evolves, so it asserts only that
// the mix stays a mix: no evaluation errors, both ALLOW and DENY.
func TestReferenceScenario(t *testing.T) {
	t.Parallel()
	sc, err := load.LookupScenario("reference")
	if err != nil {
		t.Fatal(err)
	}
	e := storeEngine(t)
	count := map[chaperonev1.Decision]int{}
	for i, r := range sc.Requests {
		resp := e.Check(context.Background(), r)
		count[resp.GetDecision()]++
		var codes []string
		for _, reason := range resp.GetReasons() {
			codes = append(codes, reason.GetCode()+" "+reason.GetPolicyId())
			if reason.GetCode() == "POLICY_ERROR" || strings.HasSuffix(reason.GetCode(), "_UNAVAILABLE") {
				t.Errorf("request %d: %s", i, reason.GetCode())
			}
		}
		t.Logf("%2d %-6s %s %s %s (%s): %s", i, strings.TrimPrefix(resp.GetDecision().String(), "DECISION_"),
			r.GetSubject().GetRoles(), r.GetAction(), r.GetResource().GetType(), r.GetPurposeOfUse(), strings.Join(codes, "; "))
	}
	if count[chaperonev1.Decision_DECISION_ALLOW] == 0 || count[chaperonev1.Decision_DECISION_DENY] == 0 {
		t.Errorf("decisions %v: want both ALLOW and DENY", count)
	}
}
