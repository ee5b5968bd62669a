package engine

import (
	"context"
	"encoding/binary"
	"maps"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
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

// cedarLeaf is one attribute: value returns what newCedarEntities gives
// it (false when the record does not have it; TestCedarLeavesMatchEntities
// holds each to newCedarEntities), key appends the facts it is made of to
// a memo key, at least as finely as the value (equal keys, equal values:
// TestCedarKeyDistinguishesValues), without building it.
type cedarLeaf struct {
	value func(f *facts, c *constRecords) (cedar.Value, bool)
	key   func(buf []byte, f *facts) []byte
}

func present(v cedar.Value) (cedar.Value, bool) { return v, true }

func strLeaf(get func(f *facts) string) cedarLeaf {
	return cedarLeaf{
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.String(get(f))) },
		key:   func(buf []byte, f *facts) []byte { return appendStr(buf, get(f)) },
	}
}

func boolLeaf(get func(f *facts) bool) cedarLeaf {
	return cedarLeaf{
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.Boolean(get(f))) },
		key:   func(buf []byte, f *facts) []byte { return append(buf, byte(b2i(get(f)))) },
	}
}

func codingsLeaf(get func(f *facts) []*chaperonev1.Coding) cedarLeaf {
	return cedarLeaf{
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(codingSet(get(f))) },
		key:   func(buf []byte, f *facts) []byte { return appendCodings(buf, get(f)) },
	}
}

// cedarResourceLeaves are the attributes of the resource entity.
var cedarResourceLeaves = map[string]cedarLeaf{
	"type":         strLeaf(func(f *facts) string { return f.req.GetResource().GetType() }),
	"id":           strLeaf(func(f *facts) string { return f.req.GetResource().GetId() }),
	"patient":      strLeaf(func(f *facts) string { return f.req.GetResource().GetPatient() }),
	"organization": strLeaf(func(f *facts) string { return f.req.GetResource().GetOrganization() }),
	"author":       strLeaf(func(f *facts) string { return f.req.GetResource().GetAuthor() }),
	"labels": {
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) {
			ls := f.req.GetResource().GetSecurityLabels()
			vs := make([]cedar.Value, len(ls))
			for i, l := range ls {
				vs[i] = cedar.String(l.GetCode())
			}
			return present(cedar.NewSet(vs...))
		},
		key: func(buf []byte, f *facts) []byte {
			ls := f.req.GetResource().GetSecurityLabels()
			buf = binary.AppendUvarint(buf, uint64(len(ls)))
			for _, l := range ls {
				buf = appendStr(buf, l.GetCode())
			}
			return buf
		},
	},
	"securityLabels": codingsLeaf(func(f *facts) []*chaperonev1.Coding { return f.req.GetResource().GetSecurityLabels() }),
	"codes":          codingsLeaf(func(f *facts) []*chaperonev1.Coding { return f.req.GetResource().GetCodes() }),
	"categories":     codingsLeaf(func(f *facts) []*chaperonev1.Coding { return f.req.GetResource().GetCategories() }),
	"date": {
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) {
			if d := f.req.GetResource().GetDate(); d != nil {
				return cedar.NewDatetime(d.AsTime()), true
			}
			return nil, false
		},
		key: func(buf []byte, f *facts) []byte {
			d := f.req.GetResource().GetDate()
			if d == nil {
				return append(buf, 0)
			}
			buf = binary.AppendVarint(append(buf, 1), d.GetSeconds())
			return binary.AppendVarint(buf, int64(d.GetNanos()))
		},
	},
}

// cedarContextLeaves are the attributes of the context record.
var cedarContextLeaves = map[string]cedarLeaf{
	"purposeOfUse": strLeaf(func(f *facts) string { return f.req.GetPurposeOfUse() }),
	"time": {
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.NewDatetime(f.at)) },
		key:   func(buf []byte, f *facts) []byte { return binary.AppendVarint(buf, f.at.UnixNano()) },
	},
	"hour": {
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(cedar.Long(f.hour)) },
		key:   func(buf []byte, f *facts) []byte { return binary.AppendVarint(buf, int64(f.hour)) },
	},
	"localTime": {
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) { return present(localTimeRecord(f)) },
		key: func(buf []byte, f *facts) []byte {
			buf = appendStr(buf, f.weekday)
			buf = binary.AppendVarint(buf, int64(f.hour))
			return binary.AppendVarint(buf, int64(f.minute))
		},
	},
	"breakGlassReason":          strLeaf(func(f *facts) string { return f.req.GetContext().GetBreakGlassReason() }),
	"networkZone":               strLeaf(func(f *facts) string { return f.req.GetContext().GetNetworkZone() }),
	"deviceTrust":               strLeaf(func(f *facts) string { return f.req.GetContext().GetDeviceTrust() }),
	"phase":                     strLeaf(func(f *facts) string { return phaseOf(f.req) }),
	"consent":                   strLeaf(func(f *facts) string { return string(f.consent) }),
	"consentNamesSubject":       boolLeaf(func(f *facts) bool { return f.consentNamesSubject }),
	"consentNamesRecipient":     boolLeaf(func(f *facts) bool { return f.consentNamesRecipient }),
	"consentRestrictsRecipient": boolLeaf(func(f *facts) bool { return f.consentRestrictsRecipient }),
	"breakGlassGrant":           boolLeaf(func(f *facts) bool { return f.grant }),
	"treatingRelationship":      boolLeaf(func(f *facts) bool { return f.treating }),
	"sameOrganization":          boolLeaf(func(f *facts) bool { return f.sameOrganization }),
	"population":                boolLeaf(func(f *facts) bool { return f.population }),
	"decidingConsent": {
		value: func(f *facts, c *constRecords) (cedar.Value, bool) { return present(c.deciding(&f.deciding)) },
		key: func(buf []byte, f *facts) []byte {
			d := &f.deciding
			buf = appendStr(buf, d.ID)
			buf = appendStr(buf, d.Provision)
			buf = appendStr(buf, d.Scope)
			buf = appendStrs(buf, d.Categories)
			return appendStrs(buf, d.Purposes)
		},
	},
	"scopes": {
		value: func(f *facts, c *constRecords) (cedar.Value, bool) { return present(c.scopeFacts(&f.scopes)) },
		key: func(buf []byte, f *facts) []byte {
			buf = append(buf, byte(b2i(f.scopes.present)), byte(b2i(f.scopes.allows)))
			return appendStrs(buf, f.scopes.levels)
		},
	},
	"agreement": {
		value: func(f *facts, c *constRecords) (cedar.Value, bool) { return present(c.agreement(&f.agreement)) },
		key: func(buf []byte, f *facts) []byte {
			a := &f.agreement
			buf = append(buf, byte(b2i(a.exists)), byte(b2i(a.active)), byte(b2i(a.covers)))
			buf = appendStr(buf, a.vendor)
			buf = appendStr(buf, a.tier)
			buf = appendStrs(buf, a.purposes)
			return appendStrs(buf, a.resourceTypes)
		},
	},
	"ip": {
		value: func(f *facts, _ *constRecords) (cedar.Value, bool) {
			s := f.req.GetContext().GetIp()
			if ip, err := types.ParseIPAddr(s); err == nil && s != "" {
				return ip, true
			}
			return nil, false
		},
		key: func(buf []byte, f *facts) []byte { return appendStr(buf, f.req.GetContext().GetIp()) },
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
// the resource type and the facts of the attributes read.
func (p *cedarKeyPlan) appendKey(buf []byte, f *facts) []byte {
	req := f.req
	buf = appendSubjectKey(buf, req.GetSubject())
	buf = appendStr(buf, req.GetAction())
	buf = appendStr(buf, req.GetResource().GetType())
	for _, l := range p.resource {
		buf = l.leaf.key(buf, f)
	}
	for _, l := range p.context {
		buf = l.leaf.key(buf, f)
	}
	return buf
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
	key := l.keyPlan.appendKey((*bp)[:0], f)
	*bp = key
	if r, hit := m.get(key); hit {
		return *r, nil
	}
	r, err := l.evaluate(ctx, f)
	if err == nil {
		m.put(key, &r)
	}
	return r, err
}
