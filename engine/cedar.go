package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

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
	// obligationOnly: @obligation_only("true"): when it matches, its
	// obligations join those of an ALLOW, but it permits nothing.
	obligationOnly bool
	obligations    obligations
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
	// keyPlan is what the policies read, for the layer's memo (see
	// cedarmemo.go); nil when its results cannot be keyed.
	keyPlan *cedarKeyPlan
}

// principalMemoSize bounds the subjects whose entities a Cedar layer keeps.
const principalMemoSize = 4096

// knownAnnotations are the Cedar annotations the engine reads.
var knownAnnotations = []string{"id", "mask", "audit_tag", "redact_label", "reason", "overrides_consent", "obligation_only"}

// compileCedar compiles the Cedar files; problems are what the static
// checks found (validation against the schema of model when it is not nil,
// annotations, reason codes, duplicate ids), err a file that does not parse.
func compileCedar(fsys fs.FS, files []string, model *PolicyModel) (*cedarLayer, []Problem, error) {
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
	var problems []Problem
	type parsed struct {
		file string
		src  []byte
		list cedar.PolicyList
	}
	var sources []parsed
	for _, file := range files {
		src, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", file, err)
		}
		list, err := cedar.NewPolicyListFromBytes(file, src)
		if err != nil {
			return nil, nil, &CompileError{File: file, Err: err}
		}
		sources = append(sources, parsed{file, src, list})
	}
	var v *validate.Validator
	if model != nil {
		srcs := make([][]byte, len(sources))
		for i, p := range sources {
			srcs[i] = p.src
		}
		var err error
		if v, err = model.cedarValidatorFor(srcs); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range sources {
		file, src, list := p.file, p.src, p.list
		for i, pol := range list {
			span := policySpan{file: file, src: src, start: pol.Position().Offset, end: len(src)}
			if i+1 < len(list) {
				span.end = list[i+1].Position().Offset
			}
			cp, ps := newCedarPolicy(file, i, pol, span)
			problems = append(problems, ps...)
			problems = append(problems, cedarMaskProblems(span, pol, cp.obligations.maskPaths)...)
			if prev, dup := l.byID[cp.id]; dup {
				p := span.problem(CheckPolicyID, fmt.Sprintf("policy id %q is used twice (also at %s)", cp.id, positionString(prev.policy.Position())), `@id(`)
				problems = append(problems, p)
				continue
			}
			l.byID[cp.id] = cp
			ast := (*cedarast.Policy)(pol.AST())
			if v != nil {
				problems = append(problems, validateCedarPolicy(v, cp.id, ast, span)...)
			}
			if model != nil && model.Roles != nil {
				problems = append(problems, unknownRoles(span, cp.id, model.RoleType, model.Roles)...)
			}
			types, actions, err := policyScope(ast)
			if err != nil {
				return nil, nil, &CompileError{File: file, Err: fmt.Errorf("policy %q: %w", cp.id, err)}
			}
			all = append(all, scoped{cp, types, actions})
		}
	}
	if len(problems) > 0 {
		return nil, problems, nil
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
	l.keyPlan = planCedarKey(l.byID)
	return l, nil, nil
}

func positionString(p cedar.Position) string {
	return fmt.Sprintf("%s:%d:%d", p.Filename, p.Line, p.Column)
}

// newCedarPolicy reads a policy's annotations; problems are annotations
// the engine does not know or whose values it does not accept.
func newCedarPolicy(file string, i int, pol *cedar.Policy, span policySpan) (*cedarPolicy, []Problem) {
	ann := pol.Annotations()
	id := string(ann["id"])
	if id == "" {
		id = fmt.Sprintf("%s#%d", strings.TrimSuffix(file, ".cedar"), i)
	}
	cp := &cedarPolicy{id: cedar.PolicyID(id), policy: pol, forbid: pol.Effect() == cedar.Forbid}
	var problems []Problem
	bad := func(k, format string, args ...any) {
		msg := fmt.Sprintf("policy %q: @%s: ", id, k) + fmt.Sprintf(format, args...)
		problems = append(problems, span.problem(CheckAnnotation, msg, "@"+k+"("))
	}
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		val := string(ann[k])
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
					bad(string(k), "%q: want system|code", s)
					continue
				}
				cp.obligations.addLabel(label{sys, code})
			}
		case "reason":
			if !cp.forbid {
				bad(string(k), "belongs on a forbid policy")
			}
			if !validReasonCode(val) {
				problems = append(problems, span.problem(CheckReasonCode,
					fmt.Sprintf("policy %q: reason code %q is not upper snake case (e.g. TENANT_MISMATCH)", id, val), "@reason("))
			}
			cp.reason = val
		case "overrides_consent":
			if cp.forbid {
				bad(string(k), "belongs on a permit policy")
			}
			if val != "true" && val != "false" {
				bad(string(k), "%q: want \"true\" or \"false\"", val)
			}
			cp.overridesConsent = val == "true"
		case "obligation_only":
			if val != "true" && val != "false" {
				bad(string(k), "%q: want \"true\" or \"false\"", val)
			}
			cp.obligationOnly = val == "true"
		default:
			bad(string(k), "unknown annotation (known: @%s)", strings.Join(knownAnnotations, ", @"))
		}
	}
	if cp.obligationOnly {
		switch {
		case cp.forbid:
			bad("obligation_only", "belongs on a permit policy (it adds obligations to an ALLOW)")
		case cp.obligations.empty():
			bad("obligation_only", "the policy has no obligations (@mask, @audit_tag or @redact_label)")
		case cp.overridesConsent:
			bad("obligation_only", "an obligation-only policy permits nothing, so it cannot override consent")
		}
	}
	return cp, problems
}

// policySpan is the source text of one Cedar policy.
type policySpan struct {
	file       string
	src        []byte
	start, end int
}

// problem is a problem of the policy, placed at the first occurrence of
// one of needles in the policy's text, or at the policy's start.
func (s policySpan) problem(check, msg string, needles ...string) Problem {
	off := s.start
	text := string(s.src[s.start:s.end])
	for _, n := range needles {
		if n == "" {
			continue
		}
		if i := strings.Index(text, n); i >= 0 {
			off = s.start + i
			if n[0] == '.' {
				off++ // at the attribute, not the dot before it
			}
			break
		}
	}
	line, col := lineCol(s.src, off)
	return Problem{File: s.file, Line: line, Col: col, Check: check, Message: msg}
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
	for _, reason := range diag.Reasons {
		p := l.byID[reason.PolicyID]
		r.obligations.merge(&p.obligations)
		if p.obligationOnly {
			r.obligationOnly = append(r.obligationOnly, string(p.id))
			continue
		}
		r.permits = append(r.permits, permitHit{id: string(p.id), overridesConsent: p.overridesConsent})
	}
	if len(r.permits) > 0 {
		r.effect = permit
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
