package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/chaperone-pdp/chaperone/fhir/elements"
)

// Mask paths. A mask path is "Type.element[.element...]": a FHIR resource
// type and a path of elements under it, as package fhir/elements resolves
// it (through datatypes, backbone elements, concrete choice variants such as
// Observation.valueQuantity, and content references). It is valid when it
// resolves in FHIR R4 or R5 with a first segment that is a resource type of
// that release, or Resource or DomainResource (an element of every
// resource); a bare resource type is valid too (the enforcement package
// withholds such resources). The rules:
//
//   - A Cedar @mask annotation is checked when the bundle compiles; so is
//     its type against the resource types the policy can match: its scope
//     (resource is T) and the conditions every match must meet (a when
//     clause whose conjunct is resource is T, resource.type == "T" or
//     ["T", ...].contains(resource.type), or a disjunction of those). A mask
//     on a type outside that set could never apply to what the policy
//     permits and is an error. A policy whose types are not constrained that
//     way may mask any resource type.
//   - A Rego package's mask paths are checked when the bundle compiles as
//     far as they are written as literals: the "maskPaths" of its
//     obligations rule, an array or set of strings, or the name of a rule
//     of the package whose value is one (followed through else branches).
//     A literal path of a type the package never permits is an error too,
//     when every permit rule of the package holds input.resource.type to
//     literal types (== "T" or in a literal set) in its body.
//     Paths computed at run time (sprintf, comprehensions) are checked on
//     every decision instead: an ALLOW carrying an invalid one is a layer
//     error, so the request is denied POLICY_ERROR rather than released
//     with a mask the enforcement side cannot apply.

// checkMaskPath reports why p is not a valid mask path, nil when it is.
// Besides "Type.element…" it accepts what the enforcement package applies:
// a bare resource type (the resource is withheld) and paths rooted at the
// abstract Resource or DomainResource (the element on every resource).
func checkMaskPath(p string) error {
	typ, rest, _ := strings.Cut(p, ".")
	anyType := typ == "Resource" || typ == "DomainResource"
	known := false
	for _, v := range []elements.Version{elements.R4, elements.R5} {
		ix := elements.For(v)
		if !ix.IsResource(typ) && !(anyType && rest != "") {
			continue
		}
		known = true
		if rest == "" {
			return nil
		}
		if _, ok := ix.Lookup(p); ok {
			return nil
		}
	}
	if !known {
		return fmt.Errorf("mask path %q: %q is not a FHIR R4 or R5 resource type", p, typ)
	}
	return fmt.Errorf("mask path %q names no element of %s in FHIR R4 or R5%s", p, typ, firstUnknown(p))
}

// firstUnknown names the first segment of p that does not resolve, when it
// is not the last.
func firstUnknown(p string) string {
	segs := strings.Split(p, ".")
	for i := 2; i < len(segs); i++ {
		prefix := strings.Join(segs[:i], ".")
		ok := false
		for _, v := range []elements.Version{elements.R4, elements.R5} {
			if _, found := elements.For(v).Lookup(prefix); found {
				ok = true
			}
		}
		if !ok {
			return fmt.Sprintf(" (no element %q)", prefix)
		}
	}
	return ""
}

// maskIssue is an invalid mask path of a policy.
type maskIssue struct {
	path string
	err  error
}

// cedarMaskIssues checks the mask paths of a Cedar policy: each must be
// valid, and of a resource type the policy can match.
func cedarMaskIssues(pol *cedarast.Policy, masks []string) []maskIssue {
	var out []maskIssue
	types, constrained := cedarResourceTypes(pol)
	for _, m := range masks {
		if err := checkMaskPath(m); err != nil {
			out = append(out, maskIssue{m, err})
			continue
		}
		typ, _, _ := strings.Cut(m, ".")
		if constrained && typ != "Resource" && typ != "DomainResource" && !slices.Contains(types, typ) {
			slices.Sort(types)
			out = append(out, maskIssue{m, fmt.Errorf("mask path %q: the policy never permits a resource of type %s (it matches only %s)", m, typ, strings.Join(types, ", "))})
		}
	}
	return out
}

// cedarResourceTypes returns the resource types a policy can match and
// whether they are constrained at all, from its scope and the top-level
// conjuncts of its when clauses (unless clauses only narrow the match
// further, so leaving them out keeps the set an over-approximation).
func cedarResourceTypes(pol *cedarast.Policy) ([]string, bool) {
	var set []string
	constrained := false
	meet := func(ts []string) {
		if !constrained {
			set, constrained = slices.Clone(ts), true
			return
		}
		set = slices.DeleteFunc(set, func(t string) bool { return !slices.Contains(ts, t) })
	}
	switch s := pol.Resource.(type) {
	case cedarast.ScopeTypeIs:
		meet([]string{string(s.Type)})
	case cedarast.ScopeTypeIsIn:
		meet([]string{string(s.Type)})
	case cedarast.ScopeTypeEq:
		meet([]string{string(s.Entity.Type)})
	}
	for _, c := range pol.Conditions {
		if c.Condition != cedarast.ConditionWhen {
			continue
		}
		for _, conj := range conjuncts(c.Body) {
			if ts, ok := typesOf(conj); ok {
				meet(ts)
			}
		}
	}
	return set, constrained
}

func conjuncts(n cedarast.IsNode) []cedarast.IsNode {
	if a, ok := n.(cedarast.NodeTypeAnd); ok {
		return append(conjuncts(a.Left), conjuncts(a.Right)...)
	}
	return []cedarast.IsNode{n}
}

// typesOf returns the resource types a condition holds for, when it
// constrains the resource type in a form it understands.
func typesOf(n cedarast.IsNode) ([]string, bool) {
	switch e := n.(type) {
	case cedarast.NodeTypeIs:
		if isResourceVar(e.Left) {
			return []string{string(e.EntityType)}, true
		}
	case cedarast.NodeTypeIsIn:
		if isResourceVar(e.Left) {
			return []string{string(e.EntityType)}, true
		}
	case cedarast.NodeTypeEquals:
		if s, ok := stringValue(e.Right); ok && isResourceType(e.Left) {
			return []string{s}, true
		}
		if s, ok := stringValue(e.Left); ok && isResourceType(e.Right) {
			return []string{s}, true
		}
	case cedarast.NodeTypeContains:
		if isResourceType(e.Right) {
			return stringLiterals(e.Left)
		}
	case cedarast.NodeTypeOr:
		l, lok := typesOf(e.Left)
		r, rok := typesOf(e.Right)
		if lok && rok {
			return append(l, r...), true
		}
	case cedarast.NodeTypeAnd:
		l, lok := typesOf(e.Left)
		r, rok := typesOf(e.Right)
		switch {
		case lok && rok:
			return slices.DeleteFunc(l, func(t string) bool { return !slices.Contains(r, t) }), true
		case lok:
			return l, true
		case rok:
			return r, true
		}
	}
	return nil, false
}

func isResourceVar(n cedarast.IsNode) bool {
	v, ok := n.(cedarast.NodeTypeVariable)
	return ok && v.Name == "resource"
}

// isResourceType: resource.type.
func isResourceType(n cedarast.IsNode) bool {
	a, ok := n.(cedarast.NodeTypeAccess)
	return ok && a.Value == "type" && isResourceVar(a.Arg)
}

func stringValue(n cedarast.IsNode) (string, bool) {
	v, ok := n.(cedarast.NodeValue)
	if !ok {
		return "", false
	}
	s, ok := v.Value.(types.String)
	return string(s), ok
}

// stringLiterals reads a set literal of strings.
func stringLiterals(n cedarast.IsNode) ([]string, bool) {
	var out []string
	switch e := n.(type) {
	case cedarast.NodeTypeSet:
		for _, el := range e.Elements {
			s, ok := stringValue(el)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case cedarast.NodeValue:
		set, ok := e.Value.(types.Set)
		if !ok {
			return nil, false
		}
		for v := range set.All() {
			s, ok := v.(types.String)
			if !ok {
				return nil, false
			}
			out = append(out, string(s))
		}
		return out, true
	}
	return nil, false
}

// regoMaskIssue is an invalid literal mask path of a Rego module.
type regoMaskIssue struct {
	loc *ast.Location
	err error
}

// regoMaskIssues checks the literal mask paths of the obligations rules of
// the modules of one package (see the rules above).
func regoMaskIssues(modules []*ast.Module) []regoMaskIssue {
	byName := map[string][]*ast.Rule{}
	for _, m := range modules {
		for _, r := range m.Rules {
			ref := r.Head.Ref()
			if len(ref) == 1 {
				name := ref[0].Value.String()
				byName[name] = append(byName[name], r)
			}
		}
	}
	var out []regoMaskIssue
	types, constrained := regoPermitTypes(byName[regoPermit])
	seen := map[string]bool{}
	var visit func(t *ast.Term, depth int)
	visit = func(t *ast.Term, depth int) {
		if t == nil || depth > 8 {
			return
		}
		check := func(el *ast.Term) {
			s, ok := el.Value.(ast.String)
			if !ok {
				return
			}
			if err := checkMaskPath(string(s)); err != nil {
				out = append(out, regoMaskIssue{el.Location, err})
				return
			}
			typ, _, _ := strings.Cut(string(s), ".")
			if constrained && typ != "Resource" && typ != "DomainResource" && !slices.Contains(types, typ) {
				out = append(out, regoMaskIssue{el.Location, fmt.Errorf("mask path %q: the package never permits a resource of type %s (it permits only %s)", string(s), typ, strings.Join(types, ", "))})
			}
		}
		switch v := t.Value.(type) {
		case *ast.Array:
			v.Foreach(check)
		case ast.Set:
			v.Foreach(check)
		case ast.Var:
			name := string(v)
			if seen[name] {
				return
			}
			seen[name] = true
			for _, r := range byName[name] {
				for e := r; e != nil; e = e.Else {
					visit(e.Head.Value, depth+1)
				}
			}
		case ast.Ref:
			if len(v) == 1 {
				visit(v[0], depth)
			}
		}
	}
	for _, r := range byName["obligations"] {
		for e := r; e != nil; e = e.Else {
			obj, ok := e.Head.Value.Value.(ast.Object)
			if !ok {
				continue
			}
			visit(obj.Get(ast.StringTerm("maskPaths")), 0)
		}
	}
	return out
}

// CheckMaskPath: a mask path names an element of a FHIR resource type the
// policy can permit (see maskpaths.go).
const CheckMaskPath = "mask-path"

// cedarMaskProblems are the invalid mask paths of a Cedar policy, each at
// its place in the @mask annotation.
func cedarMaskProblems(span policySpan, pol *cedar.Policy, masks []string) []Problem {
	var out []Problem
	for _, is := range cedarMaskIssues((*cedarast.Policy)(pol.AST()), masks) {
		line, col := maskPosition(span.src, span.start, span.end, is.path)
		out = append(out, Problem{File: span.file, Line: line, Col: col, Check: CheckMaskPath, Message: is.err.Error()})
	}
	return out
}

// maskPosition is the line and column of mask path p in the @mask
// annotation of the policy at src[start:end] (of the policy when the
// annotation cannot be found).
func maskPosition(src []byte, start, end int, p string) (int, int) {
	start = min(max(start, 0), len(src))
	end = min(max(end, start), len(src))
	at := start
	text := src[:end]
	if i := bytes.Index(text[start:], []byte("@mask")); i >= 0 {
		at = start + i
		// The path itself: an occurrence not inside a longer path.
		for from := at; ; {
			j := bytes.Index(text[from:], []byte(p))
			if j < 0 {
				break
			}
			s, e := from+j, from+j+len(p)
			if (s == 0 || !pathByte(src[s-1])) && (e == len(src) || !pathByte(src[e])) {
				at = s
				break
			}
			from = s + 1
		}
	}
	return lineCol(src, at)
}

func pathByte(c byte) bool {
	return c == '.' || c == '[' || c == ']' || c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// regoMaskProblems are the invalid literal mask paths of the Rego
// modules, by package.
func regoMaskProblems(modules map[string]*ast.Module) []Problem {
	byPkg := map[string][]*ast.Module{}
	var pkgs []string
	for _, m := range modules {
		pkg := m.Package.Path.String()
		if byPkg[pkg] == nil {
			pkgs = append(pkgs, pkg)
		}
		byPkg[pkg] = append(byPkg[pkg], m)
	}
	slices.Sort(pkgs)
	var out []Problem
	for _, pkg := range pkgs {
		for _, is := range regoMaskIssues(byPkg[pkg]) {
			p := Problem{File: "rego", Check: CheckMaskPath, Message: is.err.Error()}
			if is.loc != nil {
				p.File, p.Line, p.Col = is.loc.File, is.loc.Row, is.loc.Col
			}
			out = append(out, p)
		}
	}
	return out
}

// regoPermitTypes returns the resource types the permit rules of a package
// can permit and whether they are constrained at all: each rule must hold
// input.resource.type == "T" (or = "T", or in a literal set) in its body,
// unnegated, and the package permits the union of its rules' types. A rule
// without such an expression leaves the types unconstrained.
func regoPermitTypes(rules []*ast.Rule) ([]string, bool) {
	if len(rules) == 0 {
		return nil, false
	}
	var all []string
	for _, r := range rules {
		var ruleTypes []string
		ruleConstrained := false
		for _, e := range r.Body {
			ts, ok := regoExprTypes(e)
			if !ok {
				continue
			}
			if !ruleConstrained {
				ruleTypes, ruleConstrained = ts, true
				continue
			}
			ruleTypes = slices.DeleteFunc(ruleTypes, func(t string) bool { return !slices.Contains(ts, t) })
		}
		if !ruleConstrained {
			return nil, false
		}
		for _, t := range ruleTypes {
			if !slices.Contains(all, t) {
				all = append(all, t)
			}
		}
	}
	slices.Sort(all)
	return all, true
}

var inputResourceType = ast.MustParseRef("input.resource.type")

// regoExprTypes reads one body expression that constrains the resource
// type.
func regoExprTypes(e *ast.Expr) ([]string, bool) {
	if e.Negated || len(e.With) > 0 || !e.IsCall() {
		return nil, false
	}
	ops := e.Operands()
	if len(ops) != 2 {
		return nil, false
	}
	isType := func(t *ast.Term) bool {
		r, ok := t.Value.(ast.Ref)
		return ok && r.Equal(inputResourceType)
	}
	switch e.Operator().String() {
	case "equal", "eq":
		for i := range 2 {
			if s, ok := ops[1-i].Value.(ast.String); ok && isType(ops[i]) {
				return []string{string(s)}, true
			}
		}
	case "internal.member_2":
		if !isType(ops[0]) {
			return nil, false
		}
		var out []string
		ok := true
		collect := func(t *ast.Term) {
			s, isStr := t.Value.(ast.String)
			if !isStr {
				ok = false
				return
			}
			out = append(out, string(s))
		}
		switch c := ops[1].Value.(type) {
		case ast.Set:
			c.Foreach(collect)
		case *ast.Array:
			c.Foreach(collect)
		default:
			return nil, false
		}
		return out, ok
	}
	return nil, false
}
