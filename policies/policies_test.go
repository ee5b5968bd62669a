package policies_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	"github.com/chaperone-pdp/chaperone/policytest"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestReferenceSuites runs every *_test.yaml suite of the reference bundle
// against the bundle as embedded in the binary, so a policy change that
// breaks a rule fails `go test ./...`.
func TestReferenceSuites(t *testing.T) {
	t.Parallel()
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := policytest.Run(context.Background(), ".", policytest.Options{Bundle: b})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := policytest.WriteText(&out, &sum, false); err != nil {
		t.Fatal(err)
	}
	if !sum.OK() {
		t.Fatalf("reference suites fail:\n%s", out.String())
	}
	if n := sum.Passed + sum.Failed + sum.Skipped; n < 150 {
		t.Errorf("the reference bundle has %d test cases, want at least 150", n)
	}
	if u := sum.Coverage.Uncovered(); len(u) > 0 {
		t.Errorf("policies no test reaches: %v", u)
	}
	t.Log(out.String())
}

// TestEveryPolicyDecides checks that every policy id decides some test:
// each permit allows and each forbid denies at least one request, as named
// in the response's reasons (not only in the trace). An obligation-only
// policy decides nothing: it must instead add its obligations to some
// ALLOW (listed in the trace) and never be among the reasons.
func TestEveryPolicyDecides(t *testing.T) {
	t.Parallel()
	sum, err := policytest.Run(context.Background(), ".", policytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	decided, obligationOnly := map[string]bool{}, map[string]bool{}
	for _, s := range sum.Suites {
		for _, r := range s.Tests {
			for _, reason := range r.Response.GetReasons() {
				decided[reason.GetPolicyId()] = true
			}
			if r.Trace == nil || r.Response.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				continue
			}
			for _, l := range r.Trace.Layers {
				for _, id := range l.ObligationOnly {
					obligationOnly[id] = true
				}
			}
		}
	}
	for id := range obligationOnly {
		if decided[id] {
			t.Errorf("obligation-only policy %s is among the reasons of a decision", id)
		}
	}
	for _, p := range sum.Coverage.Policies {
		if !decided[p.ID] && !obligationOnly[p.ID] {
			t.Errorf("policy %s never appears in the reasons of a decision", p.ID)
		}
	}
}
