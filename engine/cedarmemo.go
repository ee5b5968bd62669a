package engine

import (
	"context"
	"encoding/binary"
	"maps"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// The Cedar layer's memo. Its result is a function of the principal (the
// subject), the action, the resource type and the attributes of the
// resource and of the context that its policies read. Most policies read
// a few (resource.patient, context.purposeOfUse, context.consent, …) and
// none reads resource.id, so requests for different resources of the
// same kind, by the same subject, for the same purpose get the same
// answer: the engine's decision memo, keyed on the whole request, misses
// on every one of them; this one does not. When the bundle compiles, the
// policies are searched for every use of resource and context; when each
// is an attribute read (resource.patient, context has ip) or a type test
// (resource is Patient), and every attribute read has a leaf below, the
// layer keys its results on those values. Otherwise (the resource or the
// context used as a whole, resource == X::"…", resource in …, an entity
// literal that could name the request's resource or principal, an
// attribute without a leaf) it evaluates every request.

// cedarKeyPlan is the part of the facts the Cedar policies read: the
// leaves of the resource's and the context's attributes, by name.
type cedarKeyPlan struct {
	resource []namedCedarLeaf
	context  []namedCedarLeaf
}

type namedCedarLeaf struct {
	name string
	leaf cedarLeaf
}

// cedarLeaf returns the value newCedarEntities gives an attribute, false
// when the record does not have it. TestCedarLeavesMatchEntities holds
// each to newCedarEntities.
type cedarLeaf func(f *facts, c *constRecords) (cedar.Value, bool)

func present(v cedar.Value) (cedar.Value, bool) { return v, true }

// cedarResourceLeaves are the attributes of the resource entity.
var cedarResourceLeaves = map[string]cedarLeaf{
	"type": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetResource().GetType()))
	},
	"id": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetResource().GetId()))
	},
	"patient": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetResource().GetPatient()))
	},
	"organization": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetResource().GetOrganization()))
	},
	"author": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetResource().GetAuthor()))
	},
	"labels": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		ls := f.req.GetResource().GetSecurityLabels()
		vs := make([]cedar.Value, len(ls))
		for i, l := range ls {
			vs[i] = cedar.String(l.GetCode())
		}
		return present(cedar.NewSet(vs...))
	},
	"securityLabels": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(codingSet(f.req.GetResource().GetSecurityLabels()))
	},
	"codes": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(codingSet(f.req.GetResource().GetCodes()))
	},
	"categories": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(codingSet(f.req.GetResource().GetCategories()))
	},
	"date": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		if d := f.req.GetResource().GetDate(); d != nil {
			return cedar.NewDatetime(d.AsTime()), true
		}
		return nil, false
	},
}

// cedarContextLeaves are the attributes of the context record.
var cedarContextLeaves = map[string]cedarLeaf{
	"purposeOfUse": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetPurposeOfUse()))
	},
	"time": func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.NewDatetime(f.at)) },
	"hour": func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.Long(f.hour)) },
	"breakGlassReason": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetContext().GetBreakGlassReason()))
	},
	"networkZone": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetContext().GetNetworkZone()))
	},
	"deviceTrust": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.String(f.req.GetContext().GetDeviceTrust()))
	},
	"phase":   func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.String(phaseOf(f.req))) },
	"consent": func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.String(f.consent)) },
	"consentNamesSubject": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.Boolean(f.consentNamesSubject))
	},
	"consentNamesRecipient": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.Boolean(f.consentNamesRecipient))
	},
	"consentRestrictsRecipient": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		return present(cedar.Boolean(f.consentRestrictsRecipient))
	},
	"decidingConsent":  func(f *facts, c *constRecords) (cedar.Value, bool) { return present(c.deciding(&f.deciding)) },
	"breakGlassGrant":  func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.Boolean(f.grant)) },
	"sameOrganization": func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.Boolean(f.sameOrganization)) },
	"population":       func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.Boolean(f.population)) },
	"scopes":           func(f *facts, c *constRecords) (cedar.Value, bool) { return present(c.scopeFacts(&f.scopes)) },
	"agreement":        func(f *facts, c *constRecords) (cedar.Value, bool) { return present(c.agreement(&f.agreement)) },
	"ip": func(f *facts, _ *constRecords) (cedar.Value, bool) {
		s := f.req.GetContext().GetIp()
		if ip, err := types.ParseIPAddr(s); err == nil && s != "" {
			return ip, true
		}
		return nil, false
	},
}

// planCedarKey finds what the policies read of the resource and the
// context; nil when the layer's results cannot be keyed on it.
func planCedarKey(policies map[cedar.PolicyID]*cedarPolicy) *cedarKeyPlan {
	res, ctx := map[string]bool{}, map[string]bool{}
	keyed := true
	visit := func(n cedarast.IsNode) bool {
		if !keyed {
			return false
		}
		switch n := n.(type) {
		case cedarast.NodeTypeAccess:
			return readAttr(n.Arg, string(n.Value), res, ctx)
		case cedarast.NodeTypeHas:
			return readAttr(n.Arg, string(n.Value), res, ctx)
		case cedarast.NodeTypeIs:
			// resource is T reads the type, which is in every key.
			if v, ok := n.Left.(cedarast.NodeTypeVariable); ok && v.Name == "resource" {
				return false
			}
		case cedarast.NodeTypeVariable:
			// principal and action are in every key; resource or context
			// used as a whole are not.
			if n.Name == "resource" || n.Name == "context" {
				keyed = false
			}
		case cedarast.NodeValue:
			if namesRequestEntity(n.Value) {
				keyed = false
			}
		}
		return true
	}
	for _, id := range slices.Sorted(maps.Keys(policies)) {
		p := (*cedarast.Policy)(policies[id].policy.AST())
		switch p.Resource.(type) {
		case cedarast.ScopeTypeAll, cedarast.ScopeTypeIs:
		default:
			return nil // resource == E, resource in E: the resource's id
		}
		for _, scope := range []any{p.Principal, p.Action} {
			if namesRequestEntityScope(scope) {
				return nil
			}
		}
		for _, c := range p.Conditions {
			cedarast.Inspect(cedarast.NewNode(c.Body), visit)
		}
		if !keyed {
			return nil
		}
	}
	plan := &cedarKeyPlan{}
	for _, side := range []struct {
		read   map[string]bool
		leaves map[string]cedarLeaf
		into   *[]namedCedarLeaf
	}{{res, cedarResourceLeaves, &plan.resource}, {ctx, cedarContextLeaves, &plan.context}} {
		for _, name := range slices.Sorted(maps.Keys(side.read)) {
			leaf, ok := side.leaves[name]
			if !ok {
				return nil // an attribute without a leaf: nothing says what it depends on
			}
			*side.into = append(*side.into, namedCedarLeaf{name, leaf})
		}
	}
	return plan
}

// readAttr notes arg.name when arg is the resource or the context and
// says whether to look inside arg (not when it was noted).
func readAttr(arg cedarast.IsNode, name string, res, ctx map[string]bool) bool {
	v, ok := arg.(cedarast.NodeTypeVariable)
	if !ok {
		return true
	}
	switch v.Name {
	case "resource":
		res[name] = true
		return false
	case "context":
		ctx[name] = true
		return false
	}
	return true
}

// namesRequestEntity: a literal that holds an entity other than a
// subject, a role or an action could be the request's resource, which
// the layer's entity store answers for by id. (A subject is the
// principal, which is in every key; requests whose resource type is one
// of these three are not memoised: see cedarKeyUnsafe.)
func namesRequestEntity(v types.Value) bool {
	switch v := v.(type) {
	case types.EntityUID:
		return v.Type != "Subject" && v.Type != "Role" && v.Type != "Action"
	case types.Set:
		for e := range v.All() {
			if namesRequestEntity(e) {
				return true
			}
		}
	case types.Record:
		for _, e := range v.All() {
			if namesRequestEntity(e) {
				return true
			}
		}
	}
	return false
}

func namesRequestEntityScope(scope any) bool {
	switch s := scope.(type) {
	case cedarast.ScopeTypeEq:
		return namesRequestEntity(s.Entity)
	case cedarast.ScopeTypeIn:
		return namesRequestEntity(s.Entity)
	case cedarast.ScopeTypeIsIn:
		return namesRequestEntity(s.Entity)
	case cedarast.ScopeTypeInSet:
		for _, e := range s.Entities {
			if namesRequestEntity(e) {
				return true
			}
		}
	}
	return false
}

// cedarKeyUnsafeTypes are resource types whose entities could be taken
// for the principal (Subject) or for entities the policies name (Role,
// Action): such requests are evaluated every time.
func cedarKeyUnsafe(resourceType string) bool {
	return resourceType == "Subject" || resourceType == "Role" || resourceType == "Action"
}

// appendKey appends the key of f's Cedar result: the subject, the action,
// the resource type and the read attributes; ok false when a value has no
// key encoding.
func (p *cedarKeyPlan) appendKey(buf []byte, f *facts, c *constRecords) ([]byte, bool) {
	req := f.req
	buf = appendSubjectKey(buf, req.GetSubject())
	buf = appendStr(buf, req.GetAction())
	buf = appendStr(buf, req.GetResource().GetType())
	ok := true
	for _, side := range [2][]namedCedarLeaf{p.resource, p.context} {
		for _, l := range side {
			v, has := l.leaf(f, c)
			if !has {
				buf = append(buf, 0)
				continue
			}
			buf = append(buf, 1)
			if buf, ok = appendCedarValue(buf, v); !ok {
				return buf, false
			}
		}
	}
	return buf, true
}

// appendCedarValue appends an encoding of v from which v can be read
// back (type tag, lengths, elements in order), so equal keys mean equal
// values; false for a type it does not encode.
func appendCedarValue(buf []byte, v cedar.Value) ([]byte, bool) {
	switch v := v.(type) {
	case types.String:
		return appendStr(append(buf, 's'), string(v)), true
	case types.Boolean:
		if v {
			return append(buf, 't'), true
		}
		return append(buf, 'f'), true
	case types.Long:
		return binary.AppendVarint(append(buf, 'l'), int64(v)), true
	case types.Datetime:
		return binary.AppendVarint(append(buf, 'd'), v.Milliseconds()), true
	case types.IPAddr:
		return appendStr(append(buf, 'i'), v.String()), true
	case types.Set:
		buf = binary.AppendUvarint(append(buf, 'S'), uint64(v.Len()))
		ok := true
		for e := range v.All() {
			if buf, ok = appendCedarValue(buf, e); !ok {
				return buf, false
			}
		}
		return buf, true
	case types.Record:
		keys := slices.Collect(v.Keys())
		slices.SortFunc(keys, func(a, b types.String) int { return strings.Compare(string(a), string(b)) })
		buf = binary.AppendUvarint(append(buf, 'R'), uint64(len(keys)))
		ok := true
		for _, k := range keys {
			e, _ := v.Get(k)
			buf = appendStr(buf, string(k))
			if buf, ok = appendCedarValue(buf, e); !ok {
				return buf, false
			}
		}
		return buf, true
	}
	return buf, false
}

// evaluateMemo is evaluate with results remembered in m (nil: no memo)
// by the subject, action, resource type and the attributes the policies
// read.
func (l *cedarLayer) evaluateMemo(ctx context.Context, f *facts, m *memo[*layerResult]) (layerResult, error) {
	if m == nil || l.keyPlan == nil || cedarKeyUnsafe(f.req.GetResource().GetType()) {
		return l.evaluate(ctx, f)
	}
	if len(l.policiesFor(f.req.GetResource().GetType(), f.req.GetAction())) == 0 {
		return layerResult{}, nil
	}
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	key, ok := l.keyPlan.appendKey((*bp)[:0], f, l.consts)
	*bp = key
	if ok {
		if r, hit := m.get(key); hit {
			return *r, nil
		}
	}
	r, err := l.evaluate(ctx, f)
	if err == nil && ok {
		m.put(key, &r)
	}
	return r, err
}
