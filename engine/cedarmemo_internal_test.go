package engine

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cedar-policy/cedar-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// randomCedarFacts draws every field of the request and of the facts the
// Cedar entities are built from, empty or not, from small pools.
func randomCedarFacts(rng *rand.Rand) *facts {
	str := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	codings := func() []*chaperonev1.Coding {
		var cs []*chaperonev1.Coding
		for range rng.IntN(3) {
			cs = append(cs, &chaperonev1.Coding{System: str("", "s", "http://x"), Code: str("R", "N", "ETH", "a|b")})
		}
		return cs
	}
	strs := func(xs ...string) []string {
		var out []string
		for range rng.IntN(3) {
			out = append(out, str(xs...))
		}
		return out
	}
	req := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: str("Practitioner/p1", "Patient/52"), Kind: str("", "practitioner"), Roles: strs("clinician", "analyst"),
			Organization: str("", "Organization/o1"), ClientId: str("", "vendor-a"), Scopes: strs("user/Observation.rs", "patient/*.read"),
			Identifiers: []*chaperonev1.Identifier{{System: str("", "s"), Value: str("1", "2")}}},
		Action: str("read", "search", "create"),
		Resource: &chaperonev1.Resource{Type: str("Observation", "Patient"), Id: str("", "o1", "o2"), Patient: str("", "Patient/52"),
			Organization: str("", "Organization/o1"), Author: str("", "Practitioner/p2"), SecurityLabels: codings(), Codes: codings(),
			Categories: codings(), Profiles: strs("http://p")},
		PurposeOfUse: str("TREAT", "HRESCH"),
		Context: &chaperonev1.Context{BreakGlassReason: str("", "r"), Ip: str("", "10.1.2.3", "::1", "not an ip"),
			NetworkZone: str("", "corporate"), DeviceTrust: str("", "managed"), Phase: str("", "request", "resource"), CorrelationId: str("", "c")},
	}
	if rng.IntN(2) == 0 {
		req.Resource.Date = timestamppb.New(time.Date(2023, 1, 2, 3, 4, 5, rng.IntN(3)*1e6, time.UTC))
	}
	at := time.Date(2024, 6, 1, rng.IntN(24), 0, 0, 0, time.UTC)
	f := &facts{req: req, exact: at, at: at, hour: at.Hour(), minute: rng.IntN(2) * 30, weekday: str("monday", "sunday"), consent: ConsentDecision(str(string(ConsentPermit), string(ConsentDeny), string(ConsentNoConsent))),
		consentNamesSubject: rng.IntN(2) == 0, consentNamesRecipient: rng.IntN(2) == 0, consentRestrictsRecipient: rng.IntN(2) == 0,
		grant: rng.IntN(2) == 0, sameOrganization: rng.IntN(2) == 0, population: rng.IntN(2) == 0,
		scopes: scopeFacts{present: rng.IntN(2) == 0, allows: rng.IntN(2) == 0, levels: strs("user", "patient")},
	}
	if rng.IntN(2) == 0 {
		f.agreement = agreementFact{exists: true, active: rng.IntN(2) == 0, covers: rng.IntN(2) == 0, vendor: str("A", "B"), tier: "t",
			purposes: strs("TREAT"), resourceTypes: strs("Observation")}
	}
	if rng.IntN(2) == 0 {
		f.deciding = DecidingConsent{ID: str("c1", "c2"), Provision: "provision", Scope: str("research", "treatment"),
			Categories: strs("s|c"), Purposes: strs("HRESCH")}
	}
	return f
}

// TestCedarLeavesMatchEntities holds every leaf to the attribute
// newCedarEntities builds, and requires a leaf for every attribute the
// resource entity and the context record have: an attribute added there
// fails here until cedarmemo.go has its leaf.
func TestCedarLeavesMatchEntities(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(21, 22))
	consts := newConstRecords()
	seen := map[string]bool{}
	for range 2000 {
		f := randomCedarFacts(rng)
		ents := newCedarEntities(f, nil, consts, nil)
		for _, side := range []struct {
			name   string
			record cedar.Record
			leaves map[string]cedarLeaf
		}{{"resource", ents.resource.Attributes, cedarResourceLeaves}, {"context", ents.context, cedarContextLeaves}} {
			for k, v := range side.record.All() {
				seen[side.name+"."+string(k)] = true
				if _, ok := side.leaves[string(k)]; !ok {
					t.Fatalf("%s.%s has no leaf in cedarmemo.go: add one, or the Cedar memo turns off for every bundle that reads it", side.name, k)
				}
				_ = v
			}
			for name, leaf := range side.leaves {
				want, has := side.record.Get(cedar.String(name))
				got, ok := leaf.value(f, consts)
				if ok != has || (ok && !got.Equal(want)) {
					t.Fatalf("%s.%s: leaf %v (%v), entities %v (%v) for %v", side.name, name, got, ok, want, has, f.req)
				}
			}
		}
	}
	for name := range cedarResourceLeaves {
		if !seen["resource."+name] {
			t.Errorf("leaf resource.%s never matched an attribute", name)
		}
	}
	for name := range cedarContextLeaves {
		if !seen["context."+name] {
			t.Errorf("leaf context.%s never matched an attribute", name)
		}
	}
}

// TestCedarKeyDistinguishesValues: two facts with the same key give every
// read attribute the same value (and the same subject, action and type),
// over pairs drawn from small pools so that keys collide often.
func TestCedarKeyDistinguishesValues(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(23, 24))
	consts := newConstRecords()
	resNames, ctxNames := slices.Sorted(mapsKeysOf(cedarResourceLeaves)), slices.Sorted(mapsKeysOf(cedarContextLeaves))
	fixed := randomCedarFacts(rng).req.GetSubject()
	collisions := 0
	for trial := range 400 {
		// A plan of a few attributes, so that keys collide.
		plan := &cedarKeyPlan{}
		for range 1 + rng.IntN(3) {
			n := resNames[rng.IntN(len(resNames))]
			plan.resource = append(plan.resource, namedCedarLeaf{n, cedarResourceLeaves[n]})
			n = ctxNames[rng.IntN(len(ctxNames))]
			plan.context = append(plan.context, namedCedarLeaf{n, cedarContextLeaves[n]})
		}
		byKey := map[string]*facts{}
		for range 50 {
			f := randomCedarFacts(rng)
			if trial%4 > 0 {
				f.req.Subject, f.req.Action, f.req.Resource.Type = fixed, "read", "Observation"
			}
			collisions += checkCedarKey(t, plan, f, consts, byKey)
		}
	}
	if collisions < 1000 {
		t.Errorf("only %d pairs of facts shared a key: the test compares too little", collisions)
	}
}

// checkCedarKey compares f with the facts of byKey that have its key,
// and returns 1 if there were some.
func checkCedarKey(t *testing.T, plan *cedarKeyPlan, f *facts, consts *constRecords, byKey map[string]*facts) int {
	t.Helper()
	{
		key := plan.appendKey(nil, f)
		prev, dup := byKey[string(key)]
		if !dup {
			byKey[string(key)] = f
			return 0
		}
		a, b := newCedarEntities(prev, nil, consts, nil), newCedarEntities(f, nil, consts, nil)
		if !a.principal.Equal(b.principal) || prev.req.GetAction() != f.req.GetAction() || a.resource.UID.Type != b.resource.UID.Type {
			t.Fatalf("same key, different principal, action or type:\n%v\n%v", prev.req, f.req)
		}
		for _, l := range plan.resource {
			va, _ := a.resource.Attributes.Get(cedar.String(l.name))
			vb, _ := b.resource.Attributes.Get(cedar.String(l.name))
			if (va == nil) != (vb == nil) || (va != nil && !va.Equal(vb)) {
				t.Fatalf("same key, resource.%s %v and %v", l.name, va, vb)
			}
		}
		for _, l := range plan.context {
			va, _ := a.context.Get(cedar.String(l.name))
			vb, _ := b.context.Get(cedar.String(l.name))
			if (va == nil) != (vb == nil) || (va != nil && !va.Equal(vb)) {
				t.Fatalf("same key, context.%s %v and %v", l.name, va, vb)
			}
		}
	}
	return 1
}

func mapsKeysOf(m map[string]cedarLeaf) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestPlanCedarKey: what a policy set reads, and the uses that turn the
// memo off.
func TestPlanCedarKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		src      string
		resource []string // nil with context nil: no plan
		context  []string
		none     bool
	}{
		{name: "attributes", src: `permit (principal in Role::"clinician", action, resource is Observation) when { resource.patient != "" && context.purposeOfUse == "TREAT" && context has ip && context.decidingConsent.scope == "x" };`,
			resource: []string{"patient"}, context: []string{"decidingConsent", "ip", "purposeOfUse"}},
		{name: "principal and action as a whole", src: `permit (principal == Subject::"Practitioner/p1", action in Action::"access", resource) when { principal.roles.contains("a") && resource is Patient };`},
		{name: "resource id", src: `permit (principal, action, resource) when { resource.id == "o1" };`, resource: []string{"id"}},
		{name: "resource in the scope", src: `permit (principal, action, resource == Observation::"o1");`, none: true},
		{name: "resource compared", src: `permit (principal, action, resource) when { resource == Observation::"o1" };`, none: true},
		{name: "resource in", src: `permit (principal, action, resource) when { resource in Patient::"52" };`, none: true},
		{name: "entity literal read", src: `permit (principal, action, resource) when { Observation::"o1".patient == "Patient/52" };`, none: true},
		{name: "context as a whole", src: `permit (principal, action, resource) when { context == {} };`, none: true},
		{name: "attribute without a leaf", src: `permit (principal, action, resource) when { context.weekdayName == "x" };`, none: true},
		{name: "tag", src: `permit (principal, action, resource) when { resource.hasTag("x") };`, none: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, problems, err := compileCedar(fstest.MapFS{"p.cedar": {Data: []byte(tc.src)}}, []string{"p.cedar"}, nil)
			if err != nil || len(problems) > 0 {
				t.Fatal(err, problems)
			}
			if tc.none {
				if l.keyPlan != nil {
					t.Fatalf("plan %+v, want none", l.keyPlan)
				}
				return
			}
			if l.keyPlan == nil {
				t.Fatal("no plan")
			}
			names := func(ls []namedCedarLeaf) []string {
				var out []string
				for _, l := range ls {
					out = append(out, l.name)
				}
				return out
			}
			if got := names(l.keyPlan.resource); strings.Join(got, ",") != strings.Join(tc.resource, ",") {
				t.Errorf("resource %v, want %v", got, tc.resource)
			}
			if got := names(l.keyPlan.context); strings.Join(got, ",") != strings.Join(tc.context, ",") {
				t.Errorf("context %v, want %v", got, tc.context)
			}
		})
	}
}
