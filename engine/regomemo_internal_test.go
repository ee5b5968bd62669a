package engine

import (
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/chaperone-pdp/chaperone/policies"
)

func TestRegoInputPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string // dotted paths; nil with ok false
	}{
		{"constant refs", `package p
permit contains "a" if {
	"analyst" in input.subject.roles
	input.action == "read"
	input.resource.type == data.types[_]
}`, []string{"action", "resource.type", "subject.roles"}},
		{"iteration keeps the constant prefix", `package p
permit contains x if { some x in input.subject.roles; input.subject.roles[_] == "y" }`, []string{"subject.roles"}},
		{"a covering path wins", `package p
permit contains "a" if { input.facts.agreement.active; input.facts.agreement.covers; count(input.facts) > 0 }`, []string{"facts"}},
		{"computed key read inside", `package p
permit contains "a" if { input.resource[input.context.field] == "x" }`, []string{"context.field", "resource"}},
		{"input as a whole", `package p
permit contains "a" if { x := input; x.action == "read" }`, nil},
		{"input computed key", `package p
permit contains "a" if { some k; input[k] == "read" }`, nil},
		{"input as an argument", `package p
f(x) := x.action
permit contains "a" if f(input) == "read"`, nil},
		{"with replacing input", `package p
q if input.action == "read"
permit contains "a" if q with input.action as "read"`, nil},
		{"nondeterministic builtin", `package p
permit contains "a" if { input.action == "read"; time.now_ns() > 0 }`, nil},
		{"nondeterministic nested call", `package p
permit contains "a" if { x := time.now_ns(); x > 0 }`, nil},
		{"import of input", `package p
import input.subject
permit contains "a" if "x" in subject.roles`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := ast.ParseModuleWithOpts("p.rego", tc.src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			paths, ok := regoInputPaths([]*ast.Module{m})
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
		if r.keyPaths == nil || !r.deterministic {
			t.Fatal("the reference Rego layer is not keyed")
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
