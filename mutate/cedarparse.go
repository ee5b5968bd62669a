package mutate

import (
	"fmt"
	"strings"
)

// A small Cedar parser that keeps the byte span of every expression, which
// cedar-go's AST does not record. It reads what cedar-go accepts; a source
// it cannot read is reported as an error and yields no mutants.

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tInt
	tPunct
)

type token struct {
	kind       tokKind
	text       string
	start, end int
}

func lexCedar(src []byte) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("offset %d: unterminated string", i)
			}
			toks = append(toks, token{tString, string(src[i : j+1]), i, j + 1})
			i = j + 1
		case isIdentStart(c):
			j := i
			for j < len(src) && (isIdentStart(src[j]) || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			toks = append(toks, token{tIdent, string(src[i:j]), i, j})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			toks = append(toks, token{tInt, string(src[i:j]), i, j})
			i = j
		default:
			n := 1
			if i+1 < len(src) {
				switch string(src[i : i+2]) {
				case "==", "!=", "<=", ">=", "&&", "||", "::":
					n = 2
				}
			}
			toks = append(toks, token{tPunct, string(src[i : i+n]), i, i + n})
			i += n
		}
	}
	toks = append(toks, token{tEOF, "", len(src), len(src)})
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

type nodeKind int

const (
	nOther  nodeKind = iota // literal, variable, name
	nOr                     // kids: operands
	nAnd                    // kids: operands
	nRel                    // kids: left, right; op: ==, !=, <, <=, >, >=, in
	nHas                    // kids: left
	nLike                   // kids: left
	nIs                     // kids: left (and the `in` operand)
	nNot                    // kids: operand; start is the `!`
	nNeg                    // arithmetic minus
	nArith                  // + - *
	nCall                   // method call: kids: receiver, args...; op: method name
	nAccess                 // .attr or [index]: kids: receiver (and index)
	nParen                  // kids: inner
	nList                   // kids: elements
	nRecord                 // kids: values
	nRef                    // entity reference Type::"id"
	nIf                     // kids: cond, then, else
	nFunc                   // extension function call: kids: args
)

type node struct {
	kind       nodeKind
	start, end int
	kids       []*node
	op         string
	opTok      token // the operator or method name token
	seps       []token
}

// cedarPolicy is the part of a policy the mutators change.
type cedarPolicyAST struct {
	annotations []cedarAnnotation
	effect      token
	scope       []*node // the operands of the scope's ==, in or is (nil when absent)
	scopeOps    []token // the scope operators (principal, action, resource)
	scopeVars   []token // the scope variables
	conditions  []*node // when/unless bodies
	end         int     // offset after the closing ';'
}

type cedarAnnotation struct {
	name       string
	start, end int // from '@' to ')' (or the name)
	value      token
	hasValue   bool
}

type cedarParser struct {
	toks []token
	pos  int
}

func (p *cedarParser) peek() token { return p.toks[p.pos] }
func (p *cedarParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}
func (p *cedarParser) is(text string) bool {
	t := p.peek()
	return (t.kind == tPunct || t.kind == tIdent) && t.text == text
}
func (p *cedarParser) expect(text string) (token, error) {
	t := p.next()
	if t.text != text || t.kind == tString {
		return t, fmt.Errorf("offset %d: want %q, got %q", t.start, text, t.text)
	}
	return t, nil
}
func (p *cedarParser) prevEnd() int { return p.toks[p.pos-1].end }

func parseCedar(src []byte) ([]cedarPolicyAST, error) {
	toks, err := lexCedar(src)
	if err != nil {
		return nil, err
	}
	p := &cedarParser{toks: toks}
	var out []cedarPolicyAST
	for p.peek().kind != tEOF {
		pol, err := p.policy()
		if err != nil {
			return nil, err
		}
		out = append(out, pol)
	}
	return out, nil
}

func (p *cedarParser) policy() (cedarPolicyAST, error) {
	var pol cedarPolicyAST
	for p.is("@") {
		at := p.next()
		name := p.next()
		if name.kind != tIdent {
			return pol, fmt.Errorf("offset %d: want an annotation name", name.start)
		}
		a := cedarAnnotation{name: name.text, start: at.start, end: name.end}
		if p.is("(") {
			p.next()
			v := p.next()
			if v.kind != tString {
				return pol, fmt.Errorf("offset %d: want an annotation value", v.start)
			}
			cl, err := p.expect(")")
			if err != nil {
				return pol, err
			}
			a.value, a.hasValue, a.end = v, true, cl.end
		}
		pol.annotations = append(pol.annotations, a)
	}
	eff := p.next()
	if eff.text != "permit" && eff.text != "forbid" {
		return pol, fmt.Errorf("offset %d: want permit or forbid, got %q", eff.start, eff.text)
	}
	pol.effect = eff
	if _, err := p.expect("("); err != nil {
		return pol, err
	}
	for i, v := range []string{"principal", "action", "resource"} {
		if i > 0 {
			if _, err := p.expect(","); err != nil {
				return pol, err
			}
		}
		vt, err := p.expect(v)
		if err != nil {
			return pol, err
		}
		pol.scopeVars = append(pol.scopeVars, vt)
		var op token
		var operand *node
		switch {
		case p.is("==") || p.is("in"):
			op = p.next()
			n, err := p.add()
			if err != nil {
				return pol, err
			}
			operand = n
		case p.is("is"):
			op = p.next()
			if _, err := p.path(); err != nil {
				return pol, err
			}
			if p.is("in") {
				op = p.next()
				n, err := p.add()
				if err != nil {
					return pol, err
				}
				operand = n
			}
		}
		pol.scopeOps = append(pol.scopeOps, op)
		pol.scope = append(pol.scope, operand)
	}
	if _, err := p.expect(")"); err != nil {
		return pol, err
	}
	for p.is("when") || p.is("unless") {
		p.next()
		if _, err := p.expect("{"); err != nil {
			return pol, err
		}
		n, err := p.expr()
		if err != nil {
			return pol, err
		}
		if _, err := p.expect("}"); err != nil {
			return pol, err
		}
		pol.conditions = append(pol.conditions, n)
	}
	semi, err := p.expect(";")
	if err != nil {
		return pol, err
	}
	pol.end = semi.end
	return pol, nil
}

func (p *cedarParser) path() (token, error) {
	t := p.next()
	if t.kind != tIdent {
		return t, fmt.Errorf("offset %d: want a name", t.start)
	}
	for p.is("::") && p.toks[p.pos+1].kind == tIdent {
		p.next()
		p.next()
	}
	return t, nil
}

func (p *cedarParser) expr() (*node, error) {
	if p.is("if") {
		start := p.next().start
		c, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect("then"); err != nil {
			return nil, err
		}
		a, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect("else"); err != nil {
			return nil, err
		}
		b, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &node{kind: nIf, start: start, end: b.end, kids: []*node{c, a, b}}, nil
	}
	return p.chain(nOr, "||", p.and)
}

func (p *cedarParser) and() (*node, error) { return p.chain(nAnd, "&&", p.relation) }

// chain parses operands separated by op; one operand is returned as is.
func (p *cedarParser) chain(kind nodeKind, op string, operand func() (*node, error)) (*node, error) {
	first, err := operand()
	if err != nil {
		return nil, err
	}
	n := &node{kind: kind, start: first.start, kids: []*node{first}}
	for p.is(op) {
		n.seps = append(n.seps, p.next())
		k, err := operand()
		if err != nil {
			return nil, err
		}
		n.kids = append(n.kids, k)
	}
	if len(n.kids) == 1 {
		return first, nil
	}
	n.end = n.kids[len(n.kids)-1].end
	return n, nil
}

func (p *cedarParser) relation() (*node, error) {
	left, err := p.add()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == tPunct && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">="),
		t.kind == tIdent && t.text == "in":
		p.next()
		right, err := p.add()
		if err != nil {
			return nil, err
		}
		return &node{kind: nRel, start: left.start, end: right.end, kids: []*node{left, right}, op: t.text, opTok: t}, nil
	case t.kind == tIdent && t.text == "has":
		p.next()
		a := p.next()
		if a.kind != tIdent && a.kind != tString {
			return nil, fmt.Errorf("offset %d: want an attribute after has", a.start)
		}
		end := a.end
		for p.is(".") {
			p.next()
			end = p.next().end
		}
		return &node{kind: nHas, start: left.start, end: end, kids: []*node{left}}, nil
	case t.kind == tIdent && t.text == "like":
		p.next()
		pat := p.next()
		if pat.kind != tString {
			return nil, fmt.Errorf("offset %d: want a pattern after like", pat.start)
		}
		return &node{kind: nLike, start: left.start, end: pat.end, kids: []*node{left}}, nil
	case t.kind == tIdent && t.text == "is":
		p.next()
		if _, err := p.path(); err != nil {
			return nil, err
		}
		n := &node{kind: nIs, start: left.start, end: p.prevEnd(), kids: []*node{left}}
		if p.is("in") {
			p.next()
			r, err := p.add()
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, r)
			n.end = r.end
		}
		return n, nil
	}
	return left, nil
}

func (p *cedarParser) add() (*node, error) {
	left, err := p.mult()
	if err != nil {
		return nil, err
	}
	for p.is("+") || p.is("-") {
		p.next()
		r, err := p.mult()
		if err != nil {
			return nil, err
		}
		left = &node{kind: nArith, start: left.start, end: r.end, kids: []*node{left, r}}
	}
	return left, nil
}

func (p *cedarParser) mult() (*node, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.is("*") {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		left = &node{kind: nArith, start: left.start, end: r.end, kids: []*node{left, r}}
	}
	return left, nil
}

func (p *cedarParser) unary() (*node, error) {
	if p.is("!") || p.is("-") {
		t := p.next()
		k, err := p.unary()
		if err != nil {
			return nil, err
		}
		kind := nNot
		if t.text == "-" {
			kind = nNeg
		}
		return &node{kind: kind, start: t.start, end: k.end, kids: []*node{k}, opTok: t}, nil
	}
	return p.member()
}

func (p *cedarParser) member() (*node, error) {
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.is("."):
			p.next()
			name := p.next()
			if name.kind != tIdent {
				return nil, fmt.Errorf("offset %d: want an attribute or method name", name.start)
			}
			if p.is("(") {
				args, end, err := p.list("(", ")")
				if err != nil {
					return nil, err
				}
				n = &node{kind: nCall, start: n.start, end: end, kids: append([]*node{n}, args...), op: name.text, opTok: name}
				continue
			}
			n = &node{kind: nAccess, start: n.start, end: name.end, kids: []*node{n}}
		case p.is("["):
			p.next()
			idx, err := p.expr()
			if err != nil {
				return nil, err
			}
			cl, err := p.expect("]")
			if err != nil {
				return nil, err
			}
			n = &node{kind: nAccess, start: n.start, end: cl.end, kids: []*node{n, idx}}
		default:
			return n, nil
		}
	}
}

// list parses open expr, expr, ... close and returns the elements and the
// offset after close.
func (p *cedarParser) list(open, close string) ([]*node, int, error) {
	if _, err := p.expect(open); err != nil {
		return nil, 0, err
	}
	var out []*node
	for !p.is(close) {
		if len(out) > 0 {
			if _, err := p.expect(","); err != nil {
				return nil, 0, err
			}
			if p.is(close) {
				break
			}
		}
		e, err := p.expr()
		if err != nil {
			return nil, 0, err
		}
		out = append(out, e)
	}
	return out, p.next().end, nil
}

func (p *cedarParser) primary() (*node, error) {
	t := p.peek()
	switch {
	case t.kind == tString || t.kind == tInt:
		p.next()
		return &node{kind: nOther, start: t.start, end: t.end}, nil
	case t.kind == tPunct && t.text == "(":
		p.next()
		in, err := p.expr()
		if err != nil {
			return nil, err
		}
		cl, err := p.expect(")")
		if err != nil {
			return nil, err
		}
		return &node{kind: nParen, start: t.start, end: cl.end, kids: []*node{in}}, nil
	case t.kind == tPunct && t.text == "[":
		elems, end, err := p.list("[", "]")
		if err != nil {
			return nil, err
		}
		return &node{kind: nList, start: t.start, end: end, kids: elems}, nil
	case t.kind == tPunct && t.text == "{":
		p.next()
		n := &node{kind: nRecord, start: t.start}
		for !p.is("}") {
			if len(n.kids) > 0 {
				if _, err := p.expect(","); err != nil {
					return nil, err
				}
				if p.is("}") {
					break
				}
			}
			k := p.next()
			if k.kind != tIdent && k.kind != tString {
				return nil, fmt.Errorf("offset %d: want a record key", k.start)
			}
			if _, err := p.expect(":"); err != nil {
				return nil, err
			}
			v, err := p.expr()
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, v)
		}
		n.end = p.next().end
		return n, nil
	case t.kind == tIdent:
		p.next()
		end := t.end
		ref := false
		for p.is("::") {
			p.next()
			nx := p.next()
			switch {
			case nx.kind == tIdent:
				end = nx.end
			case nx.kind == tString:
				end, ref = nx.end, true
			case nx.kind == tPunct && nx.text == "{":
				for !p.is("}") && p.peek().kind != tEOF {
					p.next()
				}
				end, ref = p.next().end, true
			default:
				return nil, fmt.Errorf("offset %d: want a name or id after ::", nx.start)
			}
			if ref {
				break
			}
		}
		if ref {
			return &node{kind: nRef, start: t.start, end: end}, nil
		}
		if p.is("(") {
			args, e, err := p.list("(", ")")
			if err != nil {
				return nil, err
			}
			return &node{kind: nFunc, start: t.start, end: e, kids: args}, nil
		}
		return &node{kind: nOther, start: t.start, end: end}, nil
	}
	return nil, fmt.Errorf("offset %d: unexpected %q", t.start, t.text)
}

// isSimple reports whether n can be negated with a bare `!`.
func (n *node) isSimple() bool {
	switch n.kind {
	case nOther, nCall, nAccess, nParen, nRef, nFunc, nList, nRecord:
		return true
	}
	return false
}

func spanText(src []byte, n *node) string { return strings.TrimSpace(string(src[n.start:n.end])) }
