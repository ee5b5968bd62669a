package mutate

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Op names a mutation operator. The names are stable: they appear in the
// JSON report and may be named in a `mutate: equivalent` annotation.
type Op string

// The mutation operators.
const (
	// DropConjunct removes one operand of a Cedar `&&` chain.
	DropConjunct Op = "drop-conjunct"
	// DropDisjunct removes one operand of a Cedar `||` chain.
	DropDisjunct Op = "drop-disjunct"
	// Negate negates a condition (or removes its negation).
	Negate Op = "negate"
	// SwapEquality turns `==` into `!=` and back.
	SwapEquality Op = "swap-eq"
	// SwapBound turns `<` into `<=`, `>` into `>=` and back.
	SwapBound Op = "swap-bound"
	// SwapIn turns Cedar `in` into `==` and, before an entity reference, back.
	SwapIn Op = "swap-in"
	// SwapContains exchanges Cedar's `contains`, `containsAny` and `containsAll`.
	SwapContains Op = "swap-contains"
	// DropElement removes one element of a literal set, array or object.
	DropElement Op = "drop-element"
	// SwapEffect turns a Cedar `permit` into `forbid` and back (dropping
	// the annotations only the other effect may carry).
	SwapEffect Op = "swap-effect"
	// DropObligation removes an obligation: a Cedar @mask, @audit_tag,
	// @redact_label (or one value of its list) or @overrides_consent
	// annotation, or an entry of a Rego obligations object.
	DropObligation Op = "drop-obligation"
	// DropExpr removes an expression of a Rego rule body.
	DropExpr Op = "drop-expr"
)

// edit replaces src[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// Mutant is one policy source with one change.
type Mutant struct {
	File     string // path of the policy file in the bundle (in a [Report], joined to the bundle directory)
	Line     int    // 1-based line of the change
	Col      int    // 1-based column (in characters) of the change
	Op       Op
	Mutation string // what changed, e.g. "== → !=" or "drop conjunct"
	Original string // the source text changed, on one line
	// Equivalent is the reason given by a `mutate: equivalent` annotation;
	// empty when the mutant is not marked equivalent.
	Equivalent string
	// Policies are the ids of the policies the change is in: the Cedar
	// policy, or every permit and deny of a Rego module (a change to a
	// helper rule may reach any of them). Tests that involved them run
	// first.
	Policies []string

	offset int
	edits  []edit
}

// String is the mutant as a report line: "file:line:col: mutation: original".
func (m *Mutant) String() string {
	return fmt.Sprintf("%s:%d:%d: %s: %s", m.File, m.Line, m.Col, m.Mutation, m.Original)
}

// Apply returns src with the mutant's change made. src must be the source
// the mutant was generated from.
func (m *Mutant) Apply(src []byte) []byte {
	es := slices.Clone(m.edits)
	slices.SortFunc(es, func(a, b edit) int { return b.start - a.start })
	out := bytes.Clone(src)
	for _, e := range es {
		out = slices.Concat(out[:e.start], []byte(e.text), out[e.end:])
	}
	return out
}

// newMutant builds a mutant at offset pos whose original text is
// src[start:end] (the expression around pos, for an operator swap).
func newMutant(file string, src []byte, pos, start, end int, op Op, mutation string, edits ...edit) Mutant {
	line := 1 + bytes.Count(src[:pos], []byte("\n"))
	ls := bytes.LastIndexByte(src[:pos], '\n') + 1
	return Mutant{
		File: file, Line: line, Col: 1 + utf8.RuneCount(src[ls:pos]),
		Op: op, Mutation: mutation, Original: oneLine(stripComments(string(src[start:end]), commentPrefix(file))),
		offset: pos, edits: edits,
	}
}

// commentPrefix is how a line comment starts in file's language.
func commentPrefix(file string) string {
	if strings.HasSuffix(file, ".rego") {
		return "#"
	}
	return "//"
}

// stripComments removes line comments (outside string literals) from s.
func stripComments(s, prefix string) string {
	var b strings.Builder
	inString := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString && c == '\\' && i+1 < len(s):
			b.WriteByte(c)
			i++
			c = s[i]
		case c == '"':
			inString = !inString
		case !inString && strings.HasPrefix(s[i:], prefix):
			for i < len(s) && s[i] != '\n' {
				i++
			}
			c = '\n'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// oneLine collapses the white space of s (and comments, which the
// collapsing keeps) to single spaces and shortens it for a report line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const limit = 100
	if utf8.RuneCountInString(s) > limit {
		r := []rune(s)
		s = string(r[:limit-1]) + "…"
	}
	return s
}

// dedupe drops mutants whose mutated source equals an earlier one's, and
// mutants that change nothing.
func dedupe(src []byte, ms []Mutant) []Mutant {
	seen := map[string]bool{string(src): true}
	out := ms[:0]
	for _, m := range ms {
		k := string(m.Apply(src))
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, m)
	}
	return out
}

// equivalence is a `mutate: equivalent [op [original text]] — reason`
// annotation.
type equivalence struct {
	line     int    // the line the annotation applies to
	op       Op     // empty: every operator
	original string // empty: any original text
	reason   string
}

const equivalentMarker = "mutate: equivalent"

// parseEquivalence reads the annotations of a source whose comments start
// with prefix ("//" or "#").
func parseEquivalence(src []byte, prefix string) []equivalence {
	var out []equivalence
	lines := strings.Split(string(src), "\n")
	commentOnly := func(i int) bool {
		return i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), prefix)
	}
	for i, line := range lines {
		code, c, ok := strings.Cut(line, prefix)
		if !ok {
			continue
		}
		applies := i + 1 // a trailing comment: its own line
		if strings.TrimSpace(code) == "" {
			// A comment line: the next line that is not a comment.
			j := i + 1
			for commentOnly(j) {
				j++
			}
			applies = j + 1
		}
		c = strings.TrimSpace(c)
		rest, ok := strings.CutPrefix(c, equivalentMarker)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		var op Op
		original := ""
		if f := strings.Fields(rest); len(f) > 0 && isOp(f[0]) {
			op = Op(f[0])
			rest = strings.TrimSpace(strings.TrimPrefix(rest, f[0]))
			// After the operator, the original text up to the dash.
			if i := strings.Index(rest, "—"); i > 0 {
				original, rest = oneLine(rest[:i]), rest[i:]
			} else if i := strings.Index(rest, " -- "); i > 0 {
				original, rest = oneLine(rest[:i]), rest[i+1:]
			}
		}
		for _, sep := range []string{"—", "--", "-", ":"} {
			if r, ok := strings.CutPrefix(rest, sep); ok {
				rest = strings.TrimSpace(r)
				break
			}
		}
		if rest == "" {
			rest = "(no reason given)"
		}
		out = append(out, equivalence{line: applies, op: op, original: original, reason: rest})
	}
	return out
}

func isOp(s string) bool {
	switch Op(s) {
	case DropConjunct, DropDisjunct, Negate, SwapEquality, SwapBound, SwapIn, SwapContains,
		DropElement, SwapEffect, DropObligation, DropExpr:
		return true
	}
	return false
}

// markEquivalent sets the Equivalent reason of every mutant with an
// annotation at the end of its line or on the comment lines just before.
func markEquivalent(ms []Mutant, eqs []equivalence) {
	for i := range ms {
		m := &ms[i]
		for _, e := range eqs {
			if e.line == m.Line && (e.op == "" || e.op == m.Op) && (e.original == "" || e.original == m.Original) {
				m.Equivalent = e.reason
				break
			}
		}
	}
}
