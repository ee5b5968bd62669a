package mutate_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/mutate"
)

func TestRegoOperators(t *testing.T) {
	t.Parallel()
	const head = "package p\n\n"
	tests := []struct {
		name string
		src  string
		op   mutate.Op
		want []string
	}{
		{
			name: "drop a body expression",
			src:  "permit contains \"r\" if {\n\tinput.a == 1\n\tnot input.b\n}\n",
			op:   mutate.DropExpr,
			want: []string{
				"permit contains \"r\" if {\n\ttrue\n\tnot input.b\n}\n",
				"permit contains \"r\" if {\n\tinput.a == 1\n\ttrue\n}\n",
			},
		},
		{
			name: "negate an expression, remove a not",
			src:  "permit contains \"r\" if {\n\tinput.a < 1\n\tnot input.b\n\tinput.c == 2\n}\n",
			op:   mutate.Negate,
			want: []string{
				"permit contains \"r\" if {\n\tnot input.a < 1\n\tnot input.b\n\tinput.c == 2\n}\n",
				"permit contains \"r\" if {\n\tinput.a < 1\n\tinput.b\n\tinput.c == 2\n}\n",
			},
		},
		{
			name: "change a comparison",
			src:  "permit contains \"r\" if {\n\tinput.a == 1\n\tinput.b != \"\"\n\tinput.c >= 3\n}\n",
			op:   mutate.SwapEquality,
			want: []string{
				"permit contains \"r\" if {\n\tinput.a != 1\n\tinput.b != \"\"\n\tinput.c >= 3\n}\n",
				"permit contains \"r\" if {\n\tinput.a == 1\n\tinput.b == \"\"\n\tinput.c >= 3\n}\n",
			},
		},
		{
			name: "change a bound",
			src:  "permit contains \"r\" if input.c >= 3\n",
			op:   mutate.SwapBound,
			want: []string{"permit contains \"r\" if input.c > 3\n"},
		},
		{
			name: "drop an element of a set literal",
			src:  "permit contains \"r\" if input.x in {\"a\", \"b\"}\n",
			op:   mutate.DropElement,
			want: []string{
				"permit contains \"r\" if input.x in {\"b\"}\n",
				"permit contains \"r\" if input.x in {\"a\"}\n",
			},
		},
		{
			name: "drop an obligation",
			src:  "obligations := {\"maskPaths\": [\"A.b\", \"A.c\"], \"auditTags\": [\"T\"]}\n",
			op:   mutate.DropObligation,
			want: []string{
				"obligations := {\"auditTags\": [\"T\"]}\n",
				"obligations := {\"maskPaths\": [\"A.c\"], \"auditTags\": [\"T\"]}\n",
				"obligations := {\"maskPaths\": [\"A.b\"], \"auditTags\": [\"T\"]}\n",
				"obligations := {\"maskPaths\": [\"A.b\", \"A.c\"]}\n",
			},
		},
		{
			name: "deny records are not taken apart",
			src:  "deny contains {\"id\": \"d\", \"code\": \"C\"} if input.x\n",
			op:   mutate.DropElement,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mutants(t, "p.rego", head+tt.src, tt.op)
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], head)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("mutants:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestRegoEquivalence(t *testing.T) {
	t.Parallel()
	src := "package p\n\npermit contains \"r\" if {\n\t# mutate: equivalent — never sent\n\tinput.a == 1\n\tinput.b\n}\n\ndeny contains {\"id\": \"d\", \"code\": \"C\"} if input.c\n"
	ms, err := mutate.Rego("p.rego", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.String()+" | "+m.Equivalent)
		if !slices.Equal(m.Policies, []string{"r", "d"}) {
			t.Errorf("%s: policies %v, want [r d]", m.String(), m.Policies)
		}
	}
	want := []string{
		"p.rego:5:2: drop expression: input.a == 1 | never sent",
		"p.rego:5:10: == → !=: input.a == 1 | never sent",
		"p.rego:6:2: drop expression: input.b | ",
		"p.rego:6:2: negate: input.b | ",
		"p.rego:9:43: drop expression: input.c | ",
		"p.rego:9:43: negate: input.c | ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("mutants:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
