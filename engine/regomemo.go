package engine

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The Rego layer's memo. Most Rego policies read a few fields of the input
// (roles, action, resource type, purpose, a fact or two), so their result
// is the same for requests that differ only elsewhere: another resource
// id, patient, time or address. When the bundle is compiled, the Rego
// modules are searched for every reference to input; if each one starts
// with constant keys (input.subject.roles, input.resource.type, …) and no
// module reads input another way or calls a nondeterministic builtin, the
// layer's result is a function of the values at those paths (and of the
// bundle's data, fixed per bundle). The layer then remembers results by
// those values. The engine's decision memo, keyed on the whole request,
// misses whenever any field differs; this one does not.

// regoInputPaths returns the paths of the input document that modules can
// read: the constant prefix of every reference to input, sorted and
// without a path that another one contains. keyed is false when a module
// may read input in a way the paths do not capture (input as a whole, a key
// computed at evaluation time, an import of input or a with replacing it);
// deterministic is false when a module calls a nondeterministic builtin,
// whose result nothing in the input fixes. Paths are nil unless both hold.
func regoInputPaths(modules []*ast.Module) (paths [][]string, keyed, deterministic bool) {
	keyed, deterministic = true, true
	seen := map[string][]string{}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		if !deterministic {
			return true
		}
		switch x := x.(type) {
		case *ast.Import:
			if r, isRef := x.Path.Value.(ast.Ref); isRef && r.HasPrefix(ast.InputRootRef) {
				keyed = false
			}
			return true
		case *ast.With:
			if r, isRef := x.Target.Value.(ast.Ref); isRef && r.HasPrefix(ast.InputRootRef) {
				keyed = false
			}
		case *ast.Expr:
			if x.IsCall() && nondeterministic(x.Operator()) {
				deterministic = false
			}
		case ast.Call:
			if r, isRef := x[0].Value.(ast.Ref); isRef && nondeterministic(r) {
				deterministic = false
			}
		case ast.Ref:
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			var path []string
			i := 1
			for ; i < len(x); i++ {
				s, isStr := x[i].Value.(ast.String)
				if !isStr {
					break
				}
				path = append(path, string(s))
			}
			if len(path) == 0 {
				keyed = false // input[k] with k computed: any field
			} else {
				seen[strings.Join(path, "\x00")] = path
			}
			for _, t := range x[i:] { // terms of a computed key may read input too
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				keyed = false // input as a whole
			}
		}
		return false
	})
	for _, m := range modules {
		vis.Walk(m)
	}
	if !keyed || !deterministic {
		return nil, keyed, deterministic
	}
	for _, p := range seen {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, slices.Compare)
	// input.a covers input.a.b: keep the shorter.
	out := paths[:0]
	for _, p := range paths {
		if n := len(out); n > 0 && hasPrefix(p, out[n-1]) {
			continue
		}
		out = append(out, p)
	}
	return out, true, true
}

func hasPrefix(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

// nondeterministic reports whether op names a builtin whose result does
// not follow from its arguments (time.now_ns, http.send, rand.intn, …).
func nondeterministic(op ast.Ref) bool {
	b, ok := ast.BuiltinMap[op.String()]
	return ok && b.Nondeterministic
}

// regoKeyPaths are the input paths as terms, ready for lookups.
type regoKeyPaths [][]*ast.Term

func newRegoKeyPaths(paths [][]string) regoKeyPaths {
	out := make(regoKeyPaths, len(paths))
	for i, p := range paths {
		for _, k := range p {
			out[i] = append(out[i], ast.StringTerm(k))
		}
	}
	return out
}

// appendKey appends the values of input at the paths; ok is false when a
// value cannot be keyed (it never happens for documents regoInput builds).
func (kp regoKeyPaths) appendKey(buf []byte, input ast.Value) ([]byte, bool) {
	for _, path := range kp {
		v := input
		for _, k := range path {
			obj, isObj := v.(ast.Object)
			if !isObj {
				v = nil
				break
			}
			t := obj.Get(k)
			if t == nil {
				v = nil
				break
			}
			v = t.Value
		}
		if v == nil {
			buf = append(buf, 'u') // undefined
			continue
		}
		var ok bool
		if buf, ok = appendValueKey(buf, v); !ok {
			return buf, false
		}
	}
	return buf, true
}

// appendValueKey appends an unambiguous encoding of a JSON-like value:
// a type tag, then lengths and counts before contents.
func appendValueKey(buf []byte, v ast.Value) ([]byte, bool) {
	switch v := v.(type) {
	case ast.String:
		buf = append(buf, 's')
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		return append(buf, v...), true
	case ast.Boolean:
		if v {
			return append(buf, 'T'), true
		}
		return append(buf, 'F'), true
	case ast.Null:
		return append(buf, 'z'), true
	case ast.Number:
		buf = append(buf, 'n')
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		return append(buf, v...), true
	case *ast.Array:
		buf = append(buf, 'a')
		buf = binary.AppendUvarint(buf, uint64(v.Len()))
		ok := true
		for i := 0; i < v.Len() && ok; i++ {
			buf, ok = appendValueKey(buf, v.Elem(i).Value)
		}
		return buf, ok
	case ast.Set:
		buf = append(buf, 'S')
		buf = binary.AppendUvarint(buf, uint64(v.Len()))
		sorted := v.Sorted()
		ok := true
		for i := 0; i < sorted.Len() && ok; i++ {
			buf, ok = appendValueKey(buf, sorted.Elem(i).Value)
		}
		return buf, ok
	case ast.Object:
		keys := slices.Clone(v.Keys())
		slices.SortFunc(keys, func(a, b *ast.Term) int { return a.Value.Compare(b.Value) })
		buf = append(buf, 'o')
		buf = binary.AppendUvarint(buf, uint64(len(keys)))
		ok := true
		for _, k := range keys {
			if buf, ok = appendValueKey(buf, k.Value); !ok {
				break
			}
			if buf, ok = appendValueKey(buf, v.Get(k).Value); !ok {
				break
			}
		}
		return buf, ok
	}
	return buf, false
}

// evaluateMemo is evaluate with results remembered in m (nil: no memo) by
// the values at the layer's input paths.
func (l *regoLayer) evaluateMemo(ctx context.Context, f *facts, m *memo[*layerResult]) (layerResult, error) {
	if m == nil || l.keyPaths == nil {
		return l.evaluate(ctx, f)
	}
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	var (
		input ast.Value
		key   []byte
		ok    bool
	)
	if l.leaves != nil {
		key, ok = appendLeafKey((*bp)[:0], l.leaves, f, l.consts)
	} else {
		input = regoInput(f, l.consts)
		key, ok = l.keyPaths.appendKey((*bp)[:0], input)
	}
	*bp = key
	if ok {
		if r, hit := m.get(key); hit {
			return *r, nil
		}
	}
	if input == nil {
		input = regoInput(f, l.consts)
	}
	r, err := l.eval(ctx, input)
	if err == nil && ok {
		m.put(key, &r)
	}
	return r, err
}

// regoLeaf builds the value regoInput puts at one path, alone. With a
// getter for every key path, a result the memo holds is found without
// building the whole input document (most of a hit's cost).
type regoLeaf func(f *facts, c *regoConsts) ast.Value

// regoLeaves are the getters by dotted path; TestRegoLeavesMatchInput
// holds each to regoInput.
var regoLeaves = map[string]regoLeaf{
	"subject.id":   func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetSubject().GetId()) },
	"subject.kind": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetSubject().GetKind()) },
	"subject.identifiers": func(f *facts, _ *regoConsts) ast.Value {
		return identifiersTerm(f.req.GetSubject().GetIdentifiers()).Value
	},
	"subject.roles": func(f *facts, _ *regoConsts) ast.Value { return stringsTerm(f.req.GetSubject().GetRoles()).Value },
	"subject.organization": func(f *facts, _ *regoConsts) ast.Value {
		return ast.String(f.req.GetSubject().GetOrganization())
	},
	"subject.organizationIdentifiers": func(f *facts, _ *regoConsts) ast.Value {
		return identifiersTerm(f.req.GetSubject().GetOrganizationIdentifiers()).Value
	},
	"subject.scopes":   func(f *facts, _ *regoConsts) ast.Value { return stringsTerm(f.req.GetSubject().GetScopes()).Value },
	"subject.clientId": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetSubject().GetClientId()) },
	"subject.launchPatient": func(f *facts, _ *regoConsts) ast.Value {
		return ast.String(f.req.GetSubject().GetLaunchPatient())
	},
	"action":           func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetAction()) },
	"resource.type":    func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetResource().GetType()) },
	"resource.id":      func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetResource().GetId()) },
	"resource.patient": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetResource().GetPatient()) },
	"resource.securityLabels": func(f *facts, _ *regoConsts) ast.Value {
		return codingsTerm(f.req.GetResource().GetSecurityLabels()).Value
	},
	"resource.codes": func(f *facts, _ *regoConsts) ast.Value { return codingsTerm(f.req.GetResource().GetCodes()).Value },
	"resource.categories": func(f *facts, _ *regoConsts) ast.Value {
		return codingsTerm(f.req.GetResource().GetCategories()).Value
	},
	"resource.organization": func(f *facts, _ *regoConsts) ast.Value {
		return ast.String(f.req.GetResource().GetOrganization())
	},
	"resource.author":           func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetResource().GetAuthor()) },
	"resource.date":             func(f *facts, _ *regoConsts) ast.Value { return ast.String(regoDate(f.req.GetResource())) },
	"resource.profiles":         func(f *facts, _ *regoConsts) ast.Value { return stringsTerm(f.req.GetResource().GetProfiles()).Value },
	"purposeOfUse":              func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetPurposeOfUse()) },
	"context.time":              func(f *facts, _ *regoConsts) ast.Value { return ast.String(regoTime(f.at)) },
	"context.hour":              func(f *facts, _ *regoConsts) ast.Value { return ast.InternedTerm(f.hour).Value },
	"context.localTime":         func(f *facts, _ *regoConsts) ast.Value { return localTimeTerm(f).Value },
	"context.localTime.weekday": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.weekday) },
	"context.localTime.hour":    func(f *facts, _ *regoConsts) ast.Value { return ast.InternedTerm(f.hour).Value },
	"context.localTime.minute":  func(f *facts, _ *regoConsts) ast.Value { return ast.InternedTerm(f.minute).Value },
	"context.breakGlassReason": func(f *facts, _ *regoConsts) ast.Value {
		return ast.String(f.req.GetContext().GetBreakGlassReason())
	},
	"context.ip":          func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetContext().GetIp()) },
	"context.networkZone": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetContext().GetNetworkZone()) },
	"context.deviceTrust": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.req.GetContext().GetDeviceTrust()) },
	"context.phase":       func(f *facts, _ *regoConsts) ast.Value { return ast.String(phaseOf(f.req)) },
	"consent":             func(f *facts, c *regoConsts) ast.Value { return c.consentOf(f).Value },
	"consent.decision":    func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.consent) },
	"consent.namesSubject": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.consentNamesSubject)
	},
	"consent.namesRecipient": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.consentNamesRecipient)
	},
	"consent.restrictsRecipient": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.consentRestrictsRecipient)
	},
	"consent.deciding":       func(f *facts, _ *regoConsts) ast.Value { return decidingTerm(&f.deciding).Value },
	"consent.deciding.id":    func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.deciding.ID) },
	"consent.deciding.scope": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.deciding.Scope) },
	"consent.deciding.provision": func(f *facts, _ *regoConsts) ast.Value {
		return ast.String(f.deciding.Provision)
	},
	"consent.deciding.categories": func(f *facts, _ *regoConsts) ast.Value {
		return stringsTerm(f.deciding.Categories).Value
	},
	"consent.deciding.purposes": func(f *facts, _ *regoConsts) ast.Value {
		return stringsTerm(f.deciding.Purposes).Value
	},
	"facts":                 func(f *facts, c *regoConsts) ast.Value { return c.factsOf(f).Value },
	"facts.breakGlassGrant": func(f *facts, _ *regoConsts) ast.Value { return ast.Boolean(f.grant) },
	"facts.treatingRelationship": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.treating)
	},
	"facts.sameOrganization": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.sameOrganization)
	},
	"facts.population":     func(f *facts, _ *regoConsts) ast.Value { return ast.Boolean(f.population) },
	"facts.scopes.present": func(f *facts, _ *regoConsts) ast.Value { return ast.Boolean(f.scopes.present) },
	"facts.scopes.allows":  func(f *facts, _ *regoConsts) ast.Value { return ast.Boolean(f.scopes.allows) },
	"facts.scopes.levels":  func(f *facts, _ *regoConsts) ast.Value { return stringsTerm(f.scopes.levels).Value },
	"facts.agreement.exists": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.agreement.exists)
	},
	"facts.agreement.active": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.agreement.active)
	},
	"facts.agreement.covers": func(f *facts, _ *regoConsts) ast.Value {
		return ast.Boolean(f.agreement.covers)
	},
	"facts.agreement.vendor": func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.agreement.vendor) },
	"facts.agreement.tier":   func(f *facts, _ *regoConsts) ast.Value { return ast.String(f.agreement.tier) },
	"facts.agreement.purposes": func(f *facts, _ *regoConsts) ast.Value {
		return stringsTerm(f.agreement.purposes).Value
	},
	"facts.agreement.resourceTypes": func(f *facts, _ *regoConsts) ast.Value {
		return stringsTerm(f.agreement.resourceTypes).Value
	},
}

// leavesFor returns the getters of paths, or nil when one has none.
func leavesFor(paths [][]string) []regoLeaf {
	out := make([]regoLeaf, len(paths))
	for i, p := range paths {
		g, ok := regoLeaves[strings.Join(p, ".")]
		if !ok {
			return nil
		}
		out[i] = g
	}
	return out
}

// appendLeafKey appends the values at the key paths, from the getters: the
// same key appendKey makes from the whole input.
func appendLeafKey(buf []byte, leaves []regoLeaf, f *facts, c *regoConsts) ([]byte, bool) {
	for _, g := range leaves {
		var ok bool
		if buf, ok = appendValueKey(buf, g(f, c)); !ok {
			return buf, false
		}
	}
	return buf, true
}
