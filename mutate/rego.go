package mutate

import (
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// regoComparisons maps the comparison builtins to their swapped operator.
var regoComparisons = map[string][2]string{
	"equal": {"==", "!="},
	"neq":   {"!=", "=="},
	"lt":    {"<", "<="},
	"lte":   {"<=", "<"},
	"gt":    {">", ">="},
	"gte":   {">=", ">"},
}

// Rego returns the mutants of a Rego module (OPA v1 syntax), one change
// each, in source order, with the `# mutate: equivalent` annotations
// applied. A module that does not parse is an error.
func Rego(file string, src []byte) ([]Mutant, error) {
	m, err := ast.ParseModuleWithOpts(file, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	g := &regoGen{file: file, src: src}
	for _, r := range m.Rules {
		for ; r != nil; r = r.Else {
			g.rule(r)
		}
	}
	slices.SortStableFunc(g.out, func(a, b Mutant) int { return a.offset - b.offset })
	ms := dedupe(src, g.out)
	markEquivalent(ms, parseEquivalence(src, "#"))
	ids := regoPolicyIDs(m)
	for i := range ms {
		ms[i].Policies = ids
	}
	return ms, nil
}

// regoPolicyIDs lists the ids a module's permit and deny rules decide
// with: a permit's string key or the "id" of a permit's or deny's object.
func regoPolicyIDs(m *ast.Module) []string {
	var ids []string
	for _, r := range m.Rules {
		name := r.Head.Name.String()
		if len(r.Head.Reference) > 0 {
			name = r.Head.Reference[0].String()
		}
		if (name != "permit" && name != "deny") || r.Head.Key == nil {
			continue
		}
		switch k := r.Head.Key.Value.(type) {
		case ast.String:
			ids = append(ids, string(k))
		case ast.Object:
			if v := k.Get(ast.InternedTerm("id")); v != nil {
				if s, ok := v.Value.(ast.String); ok {
					ids = append(ids, string(s))
				}
			}
		}
	}
	return ids
}

type regoGen struct {
	file string
	src  []byte
	out  []Mutant
}

func (g *regoGen) add(start, end int, op Op, mutation string, edits ...edit) {
	g.out = append(g.out, newMutant(g.file, g.src, start, start, end, op, mutation, edits...))
}

// addAt adds a mutant at pos whose original text is src[start:end].
func (g *regoGen) addAt(pos, start, end int, op Op, mutation string, edits ...edit) {
	g.out = append(g.out, newMutant(g.file, g.src, pos, start, end, op, mutation, edits...))
}

// span returns the byte span of a parsed element, ok false when the parser
// did not record one.
func span(loc *ast.Location) (int, int, bool) {
	if loc == nil || len(loc.Text) == 0 {
		return 0, 0, false
	}
	return loc.Offset, loc.Offset + len(loc.Text), true
}

func (g *regoGen) rule(r *ast.Rule) {
	name := r.Head.Name.String()
	if len(r.Head.Reference) > 0 {
		name = r.Head.Reference[0].String()
	}
	obligation := name == "obligations"
	if r.Head.Value != nil && name != "deny" {
		g.terms(r.Head.Value, obligation, true)
	}
	if r.Head.Key != nil && name != "deny" {
		g.terms(r.Head.Key, obligation, true)
	}
	exprs := func(b ast.Body) bool {
		for _, e := range b {
			g.expr(e)
		}
		return false
	}
	ast.WalkBodies(r.Body, exprs)
	if r.Head.Value != nil {
		ast.WalkBodies(r.Head.Value, exprs)
	}
	for _, e := range r.Body {
		g.walkExprTerms(e)
	}
}

// walkExprTerms visits the literal collections of an expression, including
// those of comprehensions nested in it.
func (g *regoGen) walkExprTerms(e *ast.Expr) {
	ast.WalkTerms(e, func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Set, *ast.Array:
			g.collection(t, false)
		case *ast.ArrayComprehension:
			for _, be := range v.Body {
				g.walkExprTerms(be)
			}
			g.terms(v.Term, false, false)
			return true
		case *ast.SetComprehension:
			for _, be := range v.Body {
				g.walkExprTerms(be)
			}
			g.terms(v.Term, false, false)
			return true
		case *ast.ObjectComprehension:
			for _, be := range v.Body {
				g.walkExprTerms(be)
			}
			return true
		}
		return false
	})
}

// terms visits the literal collections of a rule value; objects are
// mutated only there (objects: true), where an entry is data (a map or
// the obligations) rather than a record's field.
func (g *regoGen) terms(t *ast.Term, obligation, objects bool) {
	ast.WalkTerms(t, func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Set, *ast.Array:
			g.collection(t, obligation)
		case ast.Object:
			if objects {
				g.object(v, obligation)
			}
		case *ast.ArrayComprehension:
			for _, be := range v.Body {
				g.walkExprTerms(be)
			}
		case *ast.SetComprehension:
			for _, be := range v.Body {
				g.walkExprTerms(be)
			}
		case *ast.ObjectComprehension:
			for _, be := range v.Body {
				g.walkExprTerms(be)
			}
		}
		return false
	})
}

type elemSpan struct{ start, end int }

// dropEach adds a mutant per element, removing it with one separator.
func (g *regoGen) dropEach(spans []elemSpan, op Op, what string) {
	if len(spans) < 2 {
		return
	}
	slices.SortFunc(spans, func(a, b elemSpan) int { return a.start - b.start })
	for i, s := range spans {
		var e edit
		if i < len(spans)-1 {
			e = edit{s.start, spans[i+1].start, ""}
		} else {
			e = edit{spans[i-1].end, s.end, ""}
		}
		g.add(s.start, s.end, op, what, e)
	}
}

func (g *regoGen) collection(t *ast.Term, obligation bool) {
	var elems []*ast.Term
	switch v := t.Value.(type) {
	case ast.Set:
		elems = v.Slice()
	case *ast.Array:
		for i := range v.Len() {
			elems = append(elems, v.Elem(i))
		}
	}
	var spans []elemSpan
	for _, el := range elems {
		s, e, ok := span(el.Location)
		if !ok {
			return
		}
		spans = append(spans, elemSpan{s, e})
	}
	op, what := DropElement, "drop element"
	if obligation {
		op, what = DropObligation, "drop obligation"
	}
	g.dropEach(spans, op, what)
}

func (g *regoGen) object(o ast.Object, obligation bool) {
	var spans []elemSpan
	ok := true
	o.Foreach(func(k, v *ast.Term) {
		ks, _, ok1 := span(k.Location)
		_, ve, ok2 := span(v.Location)
		if !ok1 || !ok2 {
			ok = false
			return
		}
		spans = append(spans, elemSpan{ks, ve})
	})
	if !ok {
		return
	}
	op, what := DropElement, "drop entry"
	if obligation {
		op, what = DropObligation, "drop obligation"
	}
	g.dropEach(spans, op, what)
}

func (g *regoGen) expr(e *ast.Expr) {
	if e.Generated {
		return
	}
	start, end, ok := span(e.Location)
	if !ok {
		return
	}
	if _, isSome := e.Terms.(*ast.SomeDecl); isSome {
		return
	}
	if _, isEvery := e.Terms.(*ast.Every); isEvery {
		return
	}
	g.add(start, end, DropExpr, "drop expression", edit{start, end, "true"})
	op := ""
	if e.IsCall() {
		op = e.Operator().String()
	}
	switch {
	case e.Negated:
		// "not x": remove the not (the inner term starts after it).
		inner := end
		if t, ok := e.Terms.(*ast.Term); ok && t.Location != nil {
			inner = t.Location.Offset
		} else if e.IsCall() {
			if o := e.Operand(0); o != nil && o.Location != nil {
				inner = o.Location.Offset
			}
		}
		if inner > start && inner < end {
			g.add(start, end, Negate, "remove not", edit{start, inner, ""})
		}
	case op == "assign" || op == "eq" || op == "equal" || op == "neq":
	default:
		g.add(start, end, Negate, "negate", edit{start, start, "not "})
	}
	if sw, ok := regoComparisons[op]; ok && len(e.Operands()) == 2 {
		_, le, ok1 := span(e.Operand(0).Location)
		rs, _, ok2 := span(e.Operand(1).Location)
		if ok1 && ok2 && le < rs {
			between := string(g.src[le:rs])
			if i := indexOp(between, sw[0]); i >= 0 {
				s := le + i
				g.addAt(s, start, end, swapOp(op), sw[0]+" → "+sw[1], edit{s, s + len(sw[0]), sw[1]})
			}
		}
	}
}

func swapOp(builtin string) Op {
	if builtin == "equal" || builtin == "neq" {
		return SwapEquality
	}
	return SwapBound
}

// indexOp finds operator op in the text between two operands, not as part
// of a longer operator.
func indexOp(s, op string) int {
	for i := 0; i+len(op) <= len(s); i++ {
		if s[i:i+len(op)] != op {
			continue
		}
		if len(op) == 1 && i+1 < len(s) && s[i+1] == '=' {
			continue
		}
		return i
	}
	return -1
}
