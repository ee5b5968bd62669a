package mutate_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/chaperone-pdp/chaperone/mutate"
)

// mutants returns the mutated sources of src made by op.
func mutants(t *testing.T, file, src string, op mutate.Op) []string {
	t.Helper()
	var (
		ms  []mutate.Mutant
		err error
	)
	if strings.HasSuffix(file, ".rego") {
		ms, err = mutate.Rego(file, []byte(src))
	} else {
		ms, err = mutate.Cedar(file, []byte(src))
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if m.Op == op {
			out = append(out, string(m.Apply([]byte(src))))
		}
	}
	return out
}

func TestCedarOperators(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		op   mutate.Op
		want []string
	}{
		{
			name: "drop conjunct",
			src:  `permit (principal, action, resource) when { a && b && c };`,
			op:   mutate.DropConjunct,
			want: []string{
				`permit (principal, action, resource) when { b && c };`,
				`permit (principal, action, resource) when { a && c };`,
				`permit (principal, action, resource) when { a && b };`,
			},
		},
		{
			name: "drop disjunct inside a conjunct",
			src:  `permit (principal, action, resource) when { a && (b || c) };`,
			op:   mutate.DropDisjunct,
			want: []string{
				`permit (principal, action, resource) when { a && (c) };`,
				`permit (principal, action, resource) when { a && (b) };`,
			},
		},
		{
			name: "negate conditions, remove a negation",
			src:  `permit (principal, action, resource) when { context.x < 3 && !context.y && context.s.contains("a") };`,
			op:   mutate.Negate,
			want: []string{
				`permit (principal, action, resource) when { !(context.x < 3) && !context.y && context.s.contains("a") };`,
				`permit (principal, action, resource) when { context.x < 3 && context.y && context.s.contains("a") };`,
				`permit (principal, action, resource) when { context.x < 3 && !context.y && !context.s.contains("a") };`,
			},
		},
		{
			name: "swap equality",
			src:  `forbid (principal, action, resource) when { context.a == "x" || context.b != "" };`,
			op:   mutate.SwapEquality,
			want: []string{
				`forbid (principal, action, resource) when { context.a != "x" || context.b != "" };`,
				`forbid (principal, action, resource) when { context.a == "x" || context.b == "" };`,
			},
		},
		{
			name: "swap bounds",
			src:  `permit (principal, action, resource) when { context.hour < 7 || context.hour >= 19 };`,
			op:   mutate.SwapBound,
			want: []string{
				`permit (principal, action, resource) when { context.hour <= 7 || context.hour >= 19 };`,
				`permit (principal, action, resource) when { context.hour < 7 || context.hour > 19 };`,
			},
		},
		{
			name: "swap in and == (scope and condition)",
			src:  `permit (principal in Role::"nurse", action, resource) when { principal == User::"u" && action in [Action::"read"] };`,
			op:   mutate.SwapIn,
			want: []string{
				`permit (principal == Role::"nurse", action, resource) when { principal == User::"u" && action in [Action::"read"] };`,
				`permit (principal in Role::"nurse", action, resource) when { principal in User::"u" && action in [Action::"read"] };`,
				`permit (principal in Role::"nurse", action, resource) when { principal == User::"u" && action == [Action::"read"] };`,
			},
		},
		{
			name: "swap contains",
			src:  `permit (principal, action, resource) when { ["a", "b"].contains(context.p) && context.l.containsAny(["x"]) };`,
			op:   mutate.SwapContains,
			want: []string{
				`permit (principal, action, resource) when { ["a", "b"].contains(context.p) && context.l.containsAll(["x"]) };`,
				`permit (principal, action, resource) when { ["a", "b"].contains(context.p) && context.l.contains(["x"]) };`,
			},
		},
		{
			name: "drop an element of a literal set",
			src:  `permit (principal, action in [Action::"read", Action::"search"], resource) when { ["a", "b", "c"].contains(context.p) };`,
			op:   mutate.DropElement,
			want: []string{
				`permit (principal, action in [Action::"search"], resource) when { ["a", "b", "c"].contains(context.p) };`,
				`permit (principal, action in [Action::"read"], resource) when { ["a", "b", "c"].contains(context.p) };`,
				`permit (principal, action in [Action::"read", Action::"search"], resource) when { ["b", "c"].contains(context.p) };`,
				`permit (principal, action in [Action::"read", Action::"search"], resource) when { ["a", "c"].contains(context.p) };`,
				`permit (principal, action in [Action::"read", Action::"search"], resource) when { ["a", "b"].contains(context.p) };`,
			},
		},
		{
			name: "permit to forbid drops @overrides_consent",
			src:  "@id(\"p\")\n@overrides_consent(\"true\")\npermit (principal, action, resource);",
			op:   mutate.SwapEffect,
			want: []string{"@id(\"p\")\nforbid (principal, action, resource);"},
		},
		{
			name: "forbid to permit drops @reason",
			src:  "@id(\"f\")\n@reason(\"NOPE\")\nforbid (principal, action, resource);",
			op:   mutate.SwapEffect,
			want: []string{"@id(\"f\")\npermit (principal, action, resource);"},
		},
		{
			name: "drop an obligation annotation, or one value of its list",
			src:  "@id(\"p\")\n@mask(\"Patient.name\")\n@audit_tag(\"A,B\")\npermit (principal, action, resource);",
			op:   mutate.DropObligation,
			want: []string{
				"@id(\"p\")\n@audit_tag(\"A,B\")\npermit (principal, action, resource);",
				"@id(\"p\")\n@mask(\"Patient.name\")\n@audit_tag(\"B\")\npermit (principal, action, resource);",
				"@id(\"p\")\n@mask(\"Patient.name\")\n@audit_tag(\"A\")\npermit (principal, action, resource);",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mutants(t, "p.cedar", tt.src, tt.op)
			if !slices.Equal(got, tt.want) {
				t.Errorf("mutants:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCedarPositionsAndEquivalence(t *testing.T) {
	t.Parallel()
	src := `@id("p")
permit (principal, action, resource)
when {
  // mutate: equivalent drop-conjunct b — b is always true here
  // mutate: equivalent negate c — c is never read
  b && c &&
  context.n == "x" // mutate: equivalent — only x is ever sent
};
`
	ms, err := mutate.Cedar("dir/p.cedar", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.String()+" | "+m.Equivalent)
		if !slices.Equal(m.Policies, []string{"p"}) {
			t.Errorf("%s: policies %v, want [p]", m.String(), m.Policies)
		}
	}
	want := []string{
		"dir/p.cedar:2:1: permit → forbid: permit | ",
		"dir/p.cedar:6:3: drop conjunct: b | b is always true here",
		"dir/p.cedar:6:3: negate: b | ",
		"dir/p.cedar:6:8: drop conjunct: c | ",
		"dir/p.cedar:6:8: negate: c | c is never read",
		"dir/p.cedar:7:3: drop conjunct: context.n == \"x\" | only x is ever sent",
		"dir/p.cedar:7:13: == → !=: context.n == \"x\" | only x is ever sent",
	}
	if !slices.Equal(got, want) {
		t.Errorf("mutants:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCedarUnreadable(t *testing.T) {
	t.Parallel()
	if _, err := mutate.Cedar("bad.cedar", []byte(`permit (principal, action resource);`)); err == nil {
		t.Error("Cedar accepted a policy with a missing comma")
	}
}

// TestReferenceBundleMutants checks that every reference policy is read
// and that every mutant made of it still parses (a mutant that does not
// parse tests nothing).
func TestReferenceBundleMutants(t *testing.T) {
	t.Parallel()
	srcs, err := mutate.Sources(os.DirFS("../policies"))
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) < 5 {
		t.Fatalf("%d policy sources found", len(srcs))
	}
	n := 0
	for _, s := range srcs {
		ms, err := mutate.Generate(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Errorf("%s: no mutants", s.File)
		}
		for _, m := range ms {
			mutated := m.Apply(s.Src)
			if strings.HasSuffix(s.File, ".rego") {
				_, err = ast.ParseModuleWithOpts(s.File, string(mutated), ast.ParserOptions{RegoVersion: ast.RegoV1})
			} else {
				_, err = cedar.NewPolicyListFromBytes(s.File, mutated)
			}
			if err != nil {
				t.Errorf("%s does not parse: %v", m.String(), err)
			}
		}
		n += len(ms)
	}
	if n < 100 {
		t.Errorf("%d mutants of the reference bundle, want at least 100", n)
	}
}

// TestOriginalTextHasNoComments: the original text of a mutant spanning
// lines leaves out comments (not a "//" inside a string).
func TestOriginalTextHasNoComments(t *testing.T) {
	t.Parallel()
	src := "permit (principal, action, resource) when {\n  [\n    \"a\", // the first\n    \"b://x\"\n  ].contains(context.p) &&\n  context.q\n};\n"
	ms, err := mutate.Cedar("p.cedar", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Op == mutate.DropConjunct && m.Line == 2 {
			if want := `[ "a", "b://x" ].contains(context.p)`; m.Original != want {
				t.Errorf("original %q, want %q", m.Original, want)
			}
			return
		}
	}
	t.Error("no drop-conjunct mutant on line 2")
}
