package mutate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// obligationAnnotations are the Cedar annotations whose removal drops an
// obligation (or, for @overrides_consent, the permit's power over a
// consent deny).
var obligationAnnotations = map[string]bool{
	"mask": true, "audit_tag": true, "redact_label": true, "overrides_consent": true,
}

// Cedar returns the mutants of a Cedar policy source, one change each, in
// source order, with the `// mutate: equivalent` annotations applied.
// A source this package cannot read is an error.
func Cedar(file string, src []byte) ([]Mutant, error) {
	pols, err := parseCedar(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	g := &cedarGen{file: file, src: src}
	for i := range pols {
		n := len(g.out)
		g.policy(&pols[i])
		id := fmt.Sprintf("%s#%d", strings.TrimSuffix(file, ".cedar"), i)
		for _, a := range pols[i].annotations {
			if v, err := strconv.Unquote(a.value.text); a.name == "id" && a.hasValue && err == nil {
				id = v
			}
		}
		for j := n; j < len(g.out); j++ {
			g.out[j].Policies = []string{id}
		}
	}
	slices.SortStableFunc(g.out, func(a, b Mutant) int { return a.offset - b.offset })
	ms := dedupe(src, g.out)
	markEquivalent(ms, parseEquivalence(src, "//"))
	return ms, nil
}

type cedarGen struct {
	file string
	src  []byte
	out  []Mutant
}

func (g *cedarGen) add(start, end int, op Op, mutation string, edits ...edit) {
	g.out = append(g.out, newMutant(g.file, g.src, start, start, end, op, mutation, edits...))
}

// addAt adds a mutant at pos whose original text is src[start:end].
func (g *cedarGen) addAt(pos, start, end int, op Op, mutation string, edits ...edit) {
	g.out = append(g.out, newMutant(g.file, g.src, pos, start, end, op, mutation, edits...))
}

func (g *cedarGen) policy(p *cedarPolicyAST) {
	// permit ↔ forbid, dropping what only the other effect may carry.
	to, drop := "forbid", "overrides_consent"
	if p.effect.text == "forbid" {
		to, drop = "permit", "reason"
	}
	edits := []edit{{p.effect.start, p.effect.end, to}}
	for _, a := range p.annotations {
		if a.name == drop {
			edits = append(edits, g.dropAnnotation(a))
		}
	}
	g.add(p.effect.start, p.effect.end, SwapEffect, p.effect.text+" → "+to, edits...)

	for _, a := range p.annotations {
		if !obligationAnnotations[a.name] {
			continue
		}
		vals := splitValues(a)
		if len(vals) < 2 {
			g.add(a.start, a.end, DropObligation, "drop @"+a.name, g.dropAnnotation(a))
			continue
		}
		for i, v := range vals {
			rest := append(append([]string{}, vals[:i]...), vals[i+1:]...)
			m := newMutant(g.file, g.src, a.start, a.start, a.end, DropObligation, "drop from @"+a.name,
				edit{a.value.start, a.value.end, strconv.Quote(strings.Join(rest, ","))})
			m.Original = v // the value dropped, so that an annotation can name it
			g.out = append(g.out, m)
		}
	}

	for i, n := range p.scope {
		if n == nil {
			continue
		}
		if op := p.scopeOps[i]; n.kind == nRef {
			switch op.text {
			case "in":
				g.addAt(op.start, p.scopeVars[i].start, n.end, SwapIn, "in → ==", edit{op.start, op.end, "=="})
			case "==":
				g.addAt(op.start, p.scopeVars[i].start, n.end, SwapIn, "== → in", edit{op.start, op.end, "in"})
			}
		}
		g.walk(n)
	}
	for _, c := range p.conditions {
		g.condition(c, false)
		g.walk(c)
	}
}

// splitValues lists the comma-separated values of an annotation.
func splitValues(a cedarAnnotation) []string {
	if !a.hasValue {
		return nil
	}
	v, err := strconv.Unquote(a.value.text)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// dropAnnotation removes an annotation and the white space after it.
func (g *cedarGen) dropAnnotation(a cedarAnnotation) edit {
	end := a.end
	for end < len(g.src) && (g.src[end] == ' ' || g.src[end] == '\t' || g.src[end] == '\r' || g.src[end] == '\n') {
		end++
	}
	return edit{a.start, end, ""}
}

// condition generates the mutants of a boolean position: dropping an
// operand of && or ||, and negation. underNot is set for the operand of a
// `!`, which is not negated again.
func (g *cedarGen) condition(n *node, underNot bool) {
	switch n.kind {
	case nAnd, nOr:
		op, what := DropConjunct, "drop conjunct"
		if n.kind == nOr {
			op, what = DropDisjunct, "drop disjunct"
		}
		for i, k := range n.kids {
			// Remove the operand with the operator before it (after it for
			// the first), so the rest reads as written.
			var e edit
			if i == 0 {
				e = edit{k.start, n.kids[1].start, ""}
			} else {
				e = edit{n.kids[i-1].end, k.end, ""}
			}
			g.add(k.start, k.end, op, what, e)
			g.condition(k, false)
		}
		return
	case nNot:
		in := n.kids[0]
		g.add(n.start, n.end, Negate, "remove !", edit{n.start, in.start, ""})
		g.condition(in, true)
		return
	case nParen:
		if !underNot {
			g.add(n.start, n.end, Negate, "negate", edit{n.start, n.start, "!"})
		}
		g.condition(n.kids[0], false)
		return
	case nIf:
		g.condition(n.kids[0], false)
		g.condition(n.kids[1], false)
		g.condition(n.kids[2], false)
		return
	case nRel:
		if n.op == "==" || n.op == "!=" {
			return // swap-eq is the negation
		}
	}
	if underNot {
		return
	}
	if n.isSimple() {
		g.add(n.start, n.end, Negate, "negate", edit{n.start, n.start, "!"})
	} else {
		g.add(n.start, n.end, Negate, "negate", edit{n.start, n.start, "!("}, edit{n.end, n.end, ")"})
	}
}

var swaps = map[string]string{"==": "!=", "!=": "==", "<": "<=", "<=": "<", ">": ">=", ">=": ">"}

// walk generates the mutants that do not depend on a boolean position:
// operator swaps and removal of literal set elements.
func (g *cedarGen) walk(n *node) {
	switch n.kind {
	case nRel:
		t := n.opTok
		switch n.op {
		case "==", "!=":
			g.addAt(t.start, n.start, n.end, SwapEquality, n.op+" → "+swaps[n.op], edit{t.start, t.end, swaps[n.op]})
			if n.op == "==" && n.kids[1].kind == nRef {
				g.addAt(t.start, n.start, n.end, SwapIn, "== → in", edit{t.start, t.end, "in"})
			}
		case "<", "<=", ">", ">=":
			g.addAt(t.start, n.start, n.end, SwapBound, n.op+" → "+swaps[n.op], edit{t.start, t.end, swaps[n.op]})
		case "in":
			g.addAt(t.start, n.start, n.end, SwapIn, "in → ==", edit{t.start, t.end, "=="})
		}
	case nCall:
		t := n.opTok
		argIsSet := len(n.kids) == 2 && n.kids[1].kind == nList
		var to []string
		switch n.op {
		case "contains":
			if argIsSet {
				to = []string{"containsAny"}
			}
		case "containsAny":
			to = []string{"containsAll", "contains"}
		case "containsAll":
			to = []string{"containsAny"}
		}
		for _, m := range to {
			g.addAt(t.start, n.start, n.end, SwapContains, n.op+" → "+m, edit{t.start, t.end, m})
		}
	case nList:
		if len(n.kids) >= 2 {
			for i, k := range n.kids {
				var e edit
				if i < len(n.kids)-1 {
					e = edit{k.start, n.kids[i+1].start, ""}
				} else {
					e = edit{n.kids[i-1].end, k.end, ""}
				}
				g.add(k.start, k.end, DropElement, "drop element", e)
			}
		}
	}
	for _, k := range n.kids {
		g.walk(k)
	}
}
