package engine

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"

	"github.com/chaperone-pdp/chaperone/policies"
)

func TestRegoInputPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string // dotted paths; nil when not keyed or not deterministic
		nondet    bool     // calls a nondeterministic builtin
	}{
		{"constant refs", `package p
permit contains "a" if {
	"analyst" in input.subject.roles
	input.action == "read"
	input.resource.type == data.types[_]
}`, []string{"action", "resource.type", "subject.roles"}, false},
		{"iteration keeps the constant prefix", `package p
permit contains x if { some x in input.subject.roles; input.subject.roles[_] == "y" }`, []string{"subject.roles"}, false},
		{"a covering path wins", `package p
permit contains "a" if { input.facts.agreement.active; input.facts.agreement.covers; count(input.facts) > 0 }`, []string{"facts"}, false},
		{"computed key read inside", `package p
permit contains "a" if { input.resource[input.context.field] == "x" }`, []string{"context.field", "resource"}, false},
		{"input as a whole", `package p
permit contains "a" if { x := input; x.action == "read" }`, nil, false},
		{"input computed key", `package p
permit contains "a" if { some k; input[k] == "read" }`, nil, false},
		{"input as an argument", `package p
f(x) := x.action
permit contains "a" if f(input) == "read"`, nil, false},
		{"with replacing input", `package p
q if input.action == "read"
permit contains "a" if q with input.action as "read"`, nil, false},
		{"nondeterministic builtin", `package p
permit contains "a" if { input.action == "read"; time.now_ns() > 0 }`, nil, true},
		{"nondeterministic nested call", `package p
permit contains "a" if { x := time.now_ns(); x > 0 }`, nil, true},
		{"import of input", `package p
import input.subject
permit contains "a" if "x" in subject.roles`, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := ast.ParseModuleWithOpts("p.rego", tc.src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			paths, keyed, deterministic := regoInputPaths([]*ast.Module{m})
			ok := keyed && deterministic
			if deterministic == tc.nondet {
				t.Errorf("deterministic = %t, want %t", deterministic, !tc.nondet)
			}
			if ok != (tc.want != nil) {
				t.Fatalf("ok = %t, want %t (paths %v)", ok, tc.want != nil, paths)
			}
			var got []string
			for _, p := range paths {
				got = append(got, strings.Join(p, "."))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("paths = %v, want %v", got, tc.want)
			}
		})
	}
}

// The reference bundle's Rego modules read a few fields; its Rego results
// are remembered across requests that differ elsewhere.
func TestReferenceRegoIsKeyed(t *testing.T) {
	t.Parallel()
	b, err := LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range b.layers {
		r, ok := l.(*regoLayer)
		if !ok {
			continue
		}
		if r.keyPaths == nil || !r.deterministic || r.leaves == nil {
			t.Fatalf("the reference Rego layer is not keyed (paths %v, deterministic %t, getters %t)", r.keyPaths, r.deterministic, r.leaves != nil)
		}
		var paths []string
		for _, p := range r.keyPaths {
			var parts []string
			for _, k := range p {
				parts = append(parts, string(k.Value.(ast.String)))
			}
			paths = append(paths, strings.Join(parts, "."))
		}
		for _, notRead := range []string{"resource.id", "resource.patient", "context.time", "context.ip"} {
			if slices.Contains(paths, notRead) {
				t.Errorf("key paths %v include %s", paths, notRead)
			}
		}
		t.Logf("reference Rego key paths: %v", paths)
		return
	}
	t.Fatal("no Rego layer in the reference bundle")
}

// TestRegoLeavesMatchInput: every getter builds exactly the value regoInput
// puts at its path, for requests with every field set and with none.
func TestRegoLeavesMatchInput(t *testing.T) {
	t.Parallel()
	full := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician", "analyst"},
			Organization: "Organization/o1", ClientId: "vendor-a", Scopes: []string{"user/Observation.rs"},
			Identifiers:             []*chaperonev1.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1"}},
			OrganizationIdentifiers: []*chaperonev1.Identifier{{System: "urn:ietf:rfc:3986", Value: "urn:oid:1"}}},
		Action: "read",
		Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1",
			Author: "Practitioner/p2", Date: timestamppb.New(time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)),
			SecurityLabels: []*chaperonev1.Coding{{System: "s", Code: "R"}}, Codes: []*chaperonev1.Coding{{Code: "1"}},
			Categories: []*chaperonev1.Coding{{System: "c", Code: "lab"}}, Profiles: []string{"http://p"}},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{BreakGlassReason: "r", Ip: "10.1.2.3", NetworkZone: "corporate", DeviceTrust: "managed"},
	}
	consts := newRegoConsts()
	for _, f := range []facts{
		{req: &chaperonev1.CheckRequest{}, at: time.Unix(0, 0), consent: ConsentNoConsent},
		{req: full, at: time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC), hour: 8, consent: ConsentPermit, consentNamesSubject: true, consentNamesRecipient: true, consentRestrictsRecipient: true,
			grant: true, scopes: scopeFacts{present: true, allows: true, levels: []string{"user"}},
			agreement: agreementFact{exists: true, active: true, covers: true, vendor: "A", tier: "business-associate",
				purposes: []string{"TREAT"}, resourceTypes: []string{"Observation"}},
			deciding: DecidingConsent{ID: "c1", Provision: "provision.provision[0]", Scope: "research", Categories: []string{"s|c"}, Purposes: []string{"HRESCH"}}},
	} {
		input := regoInput(&f, consts)
		for path, get := range regoLeaves {
			want := input
			for _, k := range strings.Split(path, ".") {
				want = want.(ast.Object).Get(ast.StringTerm(k)).Value
			}
			if got := get(&f, consts); got.Compare(want) != 0 {
				t.Errorf("%s: getter %v, input %v", path, got, want)
			}
		}
	}
	// Every leaf of the input document has a getter.
	var walk func(prefix string, v ast.Value)
	walk = func(prefix string, v ast.Value) {
		obj, ok := v.(ast.Object)
		if !ok {
			if _, has := regoLeaves[prefix]; !has {
				t.Errorf("input.%s has no getter", prefix)
			}
			return
		}
		obj.Foreach(func(k, v *ast.Term) {
			p := string(k.Value.(ast.String))
			if prefix != "" {
				p = prefix + "." + p
			}
			walk(p, v.Value)
		})
	}
	walk("", regoInput(&facts{req: full, consent: ConsentNoConsent}, consts))
}
