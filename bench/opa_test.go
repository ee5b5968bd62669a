package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/chaperone-pdp/chaperone/bench/load"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// rbacEngine is Chaperone with the comparison bundle (bench/rbac) and the
// reference scenario's consents.
func rbacEngine(t testing.TB, opts ...engine.Option) *engine.Engine {
	t.Helper()
	bundle, err := engine.LoadBundle(os.DirFS("rbac"))
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.StoreConsents(seededStore(t)), opts...)
	e.Activate(bundle)
	return e
}

// TestOPAEquivalence checks that the two sides of bench/compare.sh decide
// alike: Chaperone with bench/rbac and FHIR consents, and OPA with
// bench/opa/policy.rego and the same consents as data, on every request of
// the reference scenario (as `chaperone bench --target opa` sends them).
func TestOPAEquivalence(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("opa/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("opa/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pq, err := rego.New(rego.Query("data.chaperone.bench.decision"), rego.Module("policy.rego", string(src)),
		rego.Store(inmem.NewFromObject(data))).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := load.LookupScenario("reference")
	bodies, err := load.OPABodies(sc.Requests)
	if err != nil {
		t.Fatal(err)
	}
	e := rbacEngine(t)
	count := map[string]int{}
	for i, r := range sc.Requests {
		var body struct{ Input map[string]any }
		if err := json.Unmarshal(bodies[i], &body); err != nil {
			t.Fatal(err)
		}
		rs, err := pq.Eval(ctx, rego.EvalInput(body.Input))
		if err != nil || len(rs) != 1 {
			t.Fatalf("request %d: opa: %v %v", i, rs, err)
		}
		opa := rs[0].Expressions[0].Value.(map[string]any)
		resp := e.Check(ctx, r)
		got := map[chaperonev1.Decision]string{chaperonev1.Decision_DECISION_ALLOW: "ALLOW", chaperonev1.Decision_DECISION_DENY: "DENY"}[resp.GetDecision()]
		if got != opa["decision"] {
			t.Errorf("request %d: chaperone %s %v, opa %v", i, got, resp.GetReasons(), opa)
		}
		count[got]++
	}
	if count["ALLOW"] == 0 || count["DENY"] == 0 {
		t.Errorf("decisions %v: want both", count)
	}
	t.Logf("decisions: %v", count)
}

// BenchmarkVersusOPA decides the reference scenario in turn, in-process,
// with the two sides of bench/compare.sh: Chaperone (bench/rbac, FHIR
// consents from the store) and OPA's prepared query of
// bench/opa/policy.rego with the consents as data. OPA's input is the
// request JSON as its server receives it (decoded per evaluation).
func BenchmarkVersusOPA(b *testing.B) {
	sc, _ := load.LookupScenario("reference")
	ctx := context.Background()
	for _, memo := range []int{50000, 0} {
		name := map[bool]string{true: "engine=chaperone/memo=warm", false: "engine=chaperone/memo=off"}[memo > 0]
		b.Run(name, func(b *testing.B) {
			e := rbacEngine(b, engine.WithMemo(memo))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.Check(ctx, sc.Requests[i%len(sc.Requests)])
				i++
			}
		})
	}
	b.Run("engine=opa", func(b *testing.B) {
		src, _ := os.ReadFile("opa/policy.rego")
		raw, _ := os.ReadFile("opa/data.json")
		var data map[string]any
		if err := json.Unmarshal(raw, &data); err != nil {
			b.Fatal(err)
		}
		pq, err := rego.New(rego.Query("data.chaperone.bench.decision"), rego.Module("policy.rego", string(src)),
			rego.Store(inmem.NewFromObject(data))).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		bodies, _ := load.OPABodies(sc.Requests)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var body struct{ Input map[string]any }
			if err := json.Unmarshal(bodies[i%len(bodies)], &body); err != nil {
				b.Fatal(err)
			}
			if _, err := pq.Eval(ctx, rego.EvalInput(body.Input)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
