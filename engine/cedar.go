package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"strings"

	"github.com/cedar-policy/cedar-go"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"

	"github.com/chaperone-pdp/chaperone/fhir"
)

// actionGroups maps every FHIR interaction ([fhir.Interactions]) to the
// Cedar action group it belongs to: reads in Action::"access", writes in
// Action::"correct", operation in none.
var actionGroups = func() map[string]string {
	m := make(map[string]string, len(fhir.Interactions))
	for _, i := range fhir.Interactions {
		switch {
		case i.Reads():
			m[string(i)] = "access"
		case i.Writes():
			m[string(i)] = "correct"
		default:
			m[string(i)] = ""
		}
	}
	return m
}()

const anyType = "*"

// cedarPolicy is one compiled Cedar policy with what the engine reads from
// its annotations.
type cedarPolicy struct {
	id               cedar.PolicyID
	policy           *cedar.Policy
	forbid           bool
	reason           string // forbid: reason code
	overridesConsent bool
	obligations      obligations
}

// cedarPolicies is a pre-filtered list of policies; it satisfies
// cedar.PolicyIterator.
type cedarPolicies []*cedarPolicy

func (ps cedarPolicies) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, p := range ps {
			if !yield(p.id, p.policy) {
				return
			}
		}
	}
}

// cedarLayer evaluates the bundle's Cedar policies. Policies are indexed by
// (resource type, action) when the bundle loads, so a request is evaluated
// only against the policies whose scope can match it.
type cedarLayer struct {
	byID    map[cedar.PolicyID]*cedarPolicy
	index   map[string]map[string]cedarPolicies // resource type → action → policies
	actions cedar.EntityMap
	consts  *constRecords
	// principals are the principal entities built for recent subjects:
	// one caller makes many requests, and its entity (a record, a set of
	// roles, its parents) is the same for all of them.
	principals *memo[cedar.Entity]
}

// principalMemoSize bounds the subjects whose entities a Cedar layer keeps.
const principalMemoSize = 4096

func compileCedar(fsys fs.FS, files []string) (*cedarLayer, error) {
	l := &cedarLayer{
		byID:       map[cedar.PolicyID]*cedarPolicy{},
		index:      map[string]map[string]cedarPolicies{},
		actions:    actionEntities(),
		consts:     newConstRecords(),
		principals: newMemo[cedar.Entity](principalMemoSize),
	}
	type scoped struct {
		p       *cedarPolicy
		types   []string // nil: any resource type
		actions []string
	}
	var all []scoped
	for _, file := range files {
		src, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		list, err := cedar.NewPolicyListFromBytes(file, src)
		if err != nil {
			return nil, &CompileError{File: file, Err: err}
		}
		for i, pol := range list {
			cp, err := newCedarPolicy(file, i, pol)
			if err != nil {
				return nil, &CompileError{File: file, Err: err}
			}
			if prev, dup := l.byID[cp.id]; dup {
				return nil, &CompileError{File: file, Err: fmt.Errorf("policy id %q is used twice (also at %s)", cp.id, prev.policy.Position().Filename)}
			}
			l.byID[cp.id] = cp
			types, actions, err := policyScope((*cedarast.Policy)(pol.AST()))
			if err != nil {
				return nil, &CompileError{File: file, Err: fmt.Errorf("policy %q: %w", cp.id, err)}
			}
			all = append(all, scoped{cp, types, actions})
		}
	}
	// Index: every type named by some policy gets its own lists; anyType
	// holds the policies that apply to every type.
	typeSet := map[string]bool{anyType: true}
	for _, s := range all {
		for _, t := range s.types {
			typeSet[t] = true
		}
	}
	for t := range typeSet {
		byAction := map[string]cedarPolicies{}
		for a := range actionGroups {
			var ps cedarPolicies
			for _, s := range all {
				if (s.types == nil || (t != anyType && containsString(s.types, t))) && containsString(s.actions, a) {
					ps = append(ps, s.p)
				}
			}
			byAction[a] = ps
		}
		l.index[t] = byAction
	}
	return l, nil
}

func newCedarPolicy(file string, i int, pol *cedar.Policy) (*cedarPolicy, error) {
	ann := pol.Annotations()
	id := string(ann["id"])
	if id == "" {
		id = fmt.Sprintf("%s#%d", strings.TrimSuffix(file, ".cedar"), i)
	}
	cp := &cedarPolicy{id: cedar.PolicyID(id), policy: pol, forbid: pol.Effect() == cedar.Forbid}
	for k, v := range ann {
		val := string(v)
		switch k {
		case "id":
		case "mask":
			for _, p := range splitList(val) {
				cp.obligations.addMask(p)
			}
		case "audit_tag":
			for _, t := range splitList(val) {
				cp.obligations.addTag(t)
			}
		case "redact_label":
			for _, s := range splitList(val) {
				sys, code, ok := strings.Cut(s, "|")
				if !ok {
					return nil, fmt.Errorf("policy %q: @redact_label %q: want system|code", id, s)
				}
				cp.obligations.addLabel(label{sys, code})
			}
		case "reason":
			if !cp.forbid {
				return nil, fmt.Errorf("policy %q: @reason belongs on a forbid policy", id)
			}
			cp.reason = val
		case "overrides_consent":
			if cp.forbid {
				return nil, fmt.Errorf("policy %q: @overrides_consent belongs on a permit policy", id)
			}
			cp.overridesConsent = val == "true"
		}
	}
	return cp, nil
}

// policyScope returns the resource types (nil for any) and actions a policy's
// scope can match.
func policyScope(p *cedarast.Policy) (types []string, actions []string, err error) {
	switch s := p.Resource.(type) {
	case cedarast.ScopeTypeIs:
		types = []string{string(s.Type)}
	case cedarast.ScopeTypeIsIn:
		types = []string{string(s.Type)}
	case cedarast.ScopeTypeEq:
		types = []string{string(s.Entity.Type)}
	}
	addAction := func(uid cedar.EntityUID, in bool) error {
		if uid.Type != "Action" {
			return fmt.Errorf("action %s is not of type Action", uid)
		}
		name := string(uid.ID)
		if _, ok := actionGroups[name]; ok {
			actions = append(actions, name)
			return nil
		}
		if !in {
			return fmt.Errorf("unknown action %s", uid)
		}
		found := false
		for a, g := range actionGroups {
			if g == name {
				actions = append(actions, a)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("unknown action or action group %s", uid)
		}
		return nil
	}
	switch s := p.Action.(type) {
	case cedarast.ScopeTypeAll:
		for a := range actionGroups {
			actions = append(actions, a)
		}
	case cedarast.ScopeTypeEq:
		err = addAction(s.Entity, false)
	case cedarast.ScopeTypeIn:
		err = addAction(s.Entity, true)
	case cedarast.ScopeTypeInSet:
		for _, e := range s.Entities {
			if err = addAction(e, true); err != nil {
				break
			}
		}
	default:
		err = errors.New("unsupported action scope")
	}
	return types, actions, err
}

func actionEntities() cedar.EntityMap {
	m := cedar.EntityMap{}
	for a, g := range actionGroups {
		uid := cedar.NewEntityUID("Action", cedar.String(a))
		e := cedar.Entity{UID: uid}
		if g != "" {
			e.Parents = cedar.NewEntityUIDSet(cedar.NewEntityUID("Action", cedar.String(g)))
		}
		m[uid] = e
	}
	for _, g := range []string{"access", "correct"} {
		uid := cedar.NewEntityUID("Action", cedar.String(g))
		m[uid] = cedar.Entity{UID: uid}
	}
	return m
}

func (l *cedarLayer) name() string { return "cedar" }

func (l *cedarLayer) policyIDs() []string {
	ids := make([]string, 0, len(l.byID))
	for id := range l.byID {
		ids = append(ids, string(id))
	}
	return ids
}

// policiesFor returns the policies whose scope can match the request.
func (l *cedarLayer) policiesFor(resourceType, action string) cedarPolicies {
	byAction, ok := l.index[resourceType]
	if !ok {
		byAction = l.index[anyType]
	}
	return byAction[action]
}

func (l *cedarLayer) evaluate(_ context.Context, f *facts) (layerResult, error) {
	ps := l.policiesFor(f.req.GetResource().GetType(), f.req.GetAction())
	if len(ps) == 0 {
		return layerResult{}, nil
	}
	ents := newCedarEntities(f, l.actions, l.consts, l.principals)
	dec, diag := cedar.Authorize(ps, ents, cedar.Request{
		Principal: ents.principal.UID,
		Action:    cedar.NewEntityUID("Action", cedar.String(f.req.GetAction())),
		Resource:  ents.resource.UID,
		Context:   ents.context,
	})
	if len(diag.Errors) > 0 {
		msgs := make([]string, len(diag.Errors))
		for i, e := range diag.Errors {
			msgs[i] = e.String()
		}
		return layerResult{}, fmt.Errorf("cedar: %s", strings.Join(msgs, "; "))
	}
	var r layerResult
	if len(diag.Reasons) == 0 {
		return r, nil
	}
	if dec == cedar.Deny {
		r.effect = deny
		for _, reason := range diag.Reasons {
			p := l.byID[reason.PolicyID]
			code := p.reason
			if code == "" {
				code = "POLICY_FORBID"
			}
			r.denies = append(r.denies, denyHit{id: string(p.id), code: code})
		}
		return r, nil
	}
	r.effect = permit
	for _, reason := range diag.Reasons {
		p := l.byID[reason.PolicyID]
		r.permits = append(r.permits, permitHit{id: string(p.id), overridesConsent: p.overridesConsent})
		r.obligations.merge(&p.obligations)
	}
	return r, nil
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
