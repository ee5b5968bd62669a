package bench_test

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/chaperone-pdp/chaperone/bench/load"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// storeEngine is the reference bundle deciding with consents from an
// in-memory store seeded with the reference scenario's consents, as
// `chaperone serve` wires it.
func storeEngine(b testing.TB, opts ...engine.Option) *engine.Engine {
	b.Helper()
	mem := seededStore(b)
	bundle, err := engine.LoadBundle(policies.FS)
	if err != nil {
		b.Fatal(err)
	}
	e := engine.New(engine.StoreConsents(mem), opts...)
	e.Activate(bundle)
	return e
}

func seededStore(b testing.TB) *consentstore.Memory {
	b.Helper()
	sc, err := load.LookupScenario("reference")
	if err != nil {
		b.Fatal(err)
	}
	mem := consentstore.NewMemory()
	for _, raw := range sc.Consents {
		c, err := fhirconsent.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := mem.Put(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
	return mem
}

// BenchmarkScenario decides every request of the reference scenario in
// turn, in-process, with consents from the store: the mix `chaperone bench
// --scenario reference` sends over the network.
func BenchmarkScenario(b *testing.B) {
	sc, _ := load.LookupScenario("reference")
	for _, memo := range []int{50000, 0} {
		b.Run(fmt.Sprintf("memo=%s", map[bool]string{true: "warm", false: "off"}[memo > 0]), func(b *testing.B) {
			e := storeEngine(b, engine.WithMemo(memo))
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.Check(ctx, sc.Requests[i%len(sc.Requests)])
				i++
			}
		})
	}
}

// BenchmarkLayer evaluates each policy language alone: a bundle of only the
// reference Cedar policies, and one of only its Rego modules, memo off, no
// consents. The request is permitted by the layer under test.
func BenchmarkLayer(b *testing.B) {
	manifest, _ := fs.ReadFile(policies.FS, "manifest.yaml")
	for _, tc := range []struct {
		layer string
		glob  string
		req   *chaperonev1.CheckRequest
		want  chaperonev1.Decision
	}{
		{"cedar", "*.cedar", clinicianRead(), chaperonev1.Decision_DECISION_ALLOW},
		{"rego", "*.rego", supportRead(), chaperonev1.Decision_DECISION_ALLOW},
	} {
		b.Run("layer="+tc.layer, func(b *testing.B) {
			fsys := fstest.MapFS{"manifest.yaml": {Data: manifest}}
			files, _ := fs.Glob(policies.FS, tc.glob)
			if tc.layer == "rego" {
				data, _ := fs.Glob(policies.FS, "data/*.json")
				files = append(files, data...)
			}
			for _, f := range files {
				src, _ := fs.ReadFile(policies.FS, f)
				fsys[f] = &fstest.MapFile{Data: src}
			}
			bundle, err := engine.LoadBundle(fsys)
			if err != nil {
				b.Fatal(err)
			}
			e := engine.New(noConsents{}, engine.WithMemo(0))
			e.Activate(bundle)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if d := e.Check(ctx, tc.req); d.GetDecision() != tc.want {
					b.Fatalf("decision %v", d)
				}
			}
		})
	}
}

// supportRead is permitted by support.rego (the reference bundle's Rego).
func supportRead() *chaperonev1.CheckRequest {
	r := clinicianRead()
	r.Subject.Roles = []string{"support"}
	r.Resource.Type, r.Resource.Id = "Patient", "52"
	r.PurposeOfUse = "HOPERAT"
	r.Context.NetworkZone = "corporate"
	return r
}

// BenchmarkConsent evaluates the consent layer alone, as the engine asks
// it: the compiled consents of the patient from the store, then FHIR
// Consent evaluation.
func BenchmarkConsent(b *testing.B) {
	mem := seededStore(b)
	eval := engine.StoreConsents(mem)
	at := load.ScenarioTime
	for _, tc := range []struct {
		name, patient, label string
		want                 engine.ConsentDecision
	}{
		{"consent=none", "Patient/52", "N", engine.ConsentNoConsent},
		{"consent=deny", "Patient/cd", "N", engine.ConsentDeny},
		{"consent=permit-except-label/label=N", "Patient/cl", "N", engine.ConsentPermit},
		{"consent=permit-except-label/label=R", "Patient/cl", "R", engine.ConsentDeny},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := clinicianRead()
			req.Resource.Patient = tc.patient
			req.Resource.SecurityLabels[0].Code = tc.label
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r, err := eval.EvaluateConsent(ctx, req, at, consent.MostRecent)
				if err != nil || r.Decision != tc.want {
					b.Fatalf("consent = %q, %v; want %q", r.Decision, err, tc.want)
				}
			}
		})
	}
}

// BenchmarkPolicies decides one request against bundles of 10 and 1000
// synthetic Cedar policies spread over 100 resource types (memo off): the
// index by resource type and action keeps the per-decision cost nearly flat.
func BenchmarkPolicies(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			bundle, err := engine.LoadBundle(syntheticBundle(n))
			if err != nil {
				b.Fatal(err)
			}
			e := engine.New(noConsents{}, engine.WithMemo(0))
			e.Activate(bundle)
			req := clinicianRead()
			req.Subject.Roles = []string{"role0"}
			req.Resource.Type = typeName(0)
			ctx := context.Background()
			if d := e.Check(ctx, req); d.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				b.Fatalf("not allowed: %v", d)
			}
			b.ReportAllocs()
			for b.Loop() {
				e.Check(ctx, req)
			}
		})
	}
}

// syntheticBundle is a bundle of n Cedar policies: policy i is about
// resource type typeName(i%100) and role i%7; every tenth is a forbid.
func syntheticBundle(n int) fs.FS {
	var src strings.Builder
	for i := range n {
		t := typeName(i % 100)
		if i%10 == 9 {
			fmt.Fprintf(&src, `@id("p%d")
@reason("SENSITIVE")
forbid (principal, action in Action::"access", resource is %s)
when { resource.labels.contains("V") && context.purposeOfUse != "TREAT" && context.hour < %d };

`, i, t, i%24)
			continue
		}
		fmt.Fprintf(&src, `@id("p%d")
@audit_tag("T%d")
permit (principal in Role::"role%d", action in Action::"access", resource is %s)
when {
  context.purposeOfUse == "TREAT" &&
  resource.organization == principal.organization &&
  !resource.labels.containsAny(["R", "V"]) &&
  context.networkZone != "internet-%d"
};

`, i, i, i%7, t, i)
	}
	return fstest.MapFS{
		"manifest.yaml":  {Data: []byte("name: synthetic\nrevision: \"1\"\ncombining: deny-overrides\nnoConsent: policy\nconsentRule: most-recent\n")},
		"policies.cedar": {Data: []byte(src.String())},
	}
}

// typeName is a FHIR-like resource type name for i: Rtaa, Rtab, …
func typeName(i int) string {
	return "Rt" + string(rune('a'+i/26%26)) + string(rune('a'+i%26))
}
