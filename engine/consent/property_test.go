package consent_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// The properties below run over generated consents (R4 and R5; deny-only,
// permit-only and mixed; nested up to three levels; actors by reference,
// by identifier with and without a system, by role; actions, purposes,
// security labels, classes, periods) and generated requests, under both
// combining rules.

var propTime = day("2024-06-01")

// Pools the generators draw from. Small, so that criteria and requests
// meet often.
var (
	propSubjects   = []string{"Practitioner/p1", "Practitioner/p2", "RelatedPerson/rp1"}
	propOrgs       = []string{"Organization/o1", "Organization/o2", ""}
	propSystems    = []string{"urn:example:a", "urn:example:b", ""}
	propValues     = []string{"v1", "v2"}
	propActions    = []string{"read", "search", "create", "update", "export"}
	propPurposes   = []string{"TREAT", "ETREAT", "HPAYMT", "HRESCH"}
	propTypes      = []string{"Observation", "Condition"}
	propConsentAct = []string{"access", "correct", "use", "disclose", "collect"}
	propDates      = []string{"2020-01-01", "2022-01-01", "2024-01-01"}
	propPeriods    = [][2]string{{"2020-01-01", "2030-01-01"}, {"2025-01-01", "2030-01-01"}, {"2020-01-01", "2023-01-01"}}
	propLabels     = []fhirconsent.Coding{
		{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "ETHUD"},
		{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "HIV"},
		{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"},
		{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"},
	}
)

// genActor is a provision.actor.
type genActor struct {
	reference string // "" when by identifier or role alone
	system    string // identifier system (with value)
	value     string // identifier value; "" when none
	role      string // participation role code
}

// genProv is a provision: typ "permit", "deny" or "" (none: R4 nested
// provisions infer it, R5 provisions never have one).
type genProv struct {
	typ      string
	actors   []genActor
	actions  []string
	purposes []string
	labels   []int // indexes into propLabels
	classes  []string
	period   *[2]string
	children []*genProv
}

// genConsent is one consent of Patient/52.
type genConsent struct {
	id         string
	r5         bool
	date       string
	policyRule string   // R4: "", OPTIN, OPTOUT, hipaa-self-pay
	decision   string   // R5: permit, deny or ""
	root       *genProv // R4: the root provision (nil: none); R5: its children are the provisions
}

// typeMode says which provision types a generator may produce.
type typeMode int

const (
	anyTypes typeMode = iota
	denyOnly
	permitOnly
)

func drawActor(t *rapid.T, label string) genActor {
	var a genActor
	switch rapid.IntRange(0, 5).Draw(t, label+".kind") {
	case 0:
		a.reference = rapid.SampledFrom(propSubjects).Draw(t, label+".subject")
	case 1:
		a.reference = rapid.SampledFrom(propOrgs[:2]).Draw(t, label+".org")
	case 2, 3, 4:
		a.system = rapid.SampledFrom(propSystems).Draw(t, label+".system")
		a.value = rapid.SampledFrom(propValues).Draw(t, label+".value")
	}
	if a.reference != "" || a.value != "" {
		a.role = rapid.SampledFrom([]string{"", "IRCP", "PRCP"}).Draw(t, label+".role")
	} else {
		a.role = rapid.SampledFrom([]string{"IRCP", "PAT", "PROV"}).Draw(t, label+".role")
	}
	return a
}

func drawProv(t *rapid.T, label string, depth int, mode typeMode, r5 bool) *genProv {
	p := &genProv{}
	if !r5 {
		switch mode {
		case denyOnly:
			p.typ = "deny"
		case permitOnly:
			p.typ = "permit"
		default:
			p.typ = rapid.SampledFrom([]string{"permit", "deny", ""}).Draw(t, label+".type")
		}
	}
	if rapid.Bool().Draw(t, label+".hasActor") {
		p.actors = []genActor{drawActor(t, label+".actor")}
	}
	if rapid.IntRange(0, 3).Draw(t, label+".hasAction") == 0 {
		p.actions = []string{rapid.SampledFrom(propConsentAct).Draw(t, label+".action")}
	}
	if rapid.IntRange(0, 3).Draw(t, label+".hasPurpose") == 0 {
		p.purposes = []string{rapid.SampledFrom(propPurposes).Draw(t, label+".purpose")}
	}
	if rapid.Bool().Draw(t, label+".hasLabel") {
		p.labels = []int{rapid.IntRange(0, len(propLabels)-1).Draw(t, label+".label")}
	}
	if rapid.IntRange(0, 3).Draw(t, label+".hasClass") == 0 {
		p.classes = []string{rapid.SampledFrom(propTypes).Draw(t, label+".class")}
	}
	if depth > 0 && rapid.IntRange(0, 4).Draw(t, label+".hasPeriod") == 0 {
		per := rapid.SampledFrom(propPeriods).Draw(t, label+".period")
		p.period = &per
	}
	if depth < 3 {
		// R5 provisions alternate: below a deny decision they permit, below
		// those they deny. A deny-only R5 consent has no provisions.
		maxKids := 2
		if r5 && mode != anyTypes {
			maxKids = 0
		}
		n := rapid.IntRange(0, maxKids).Draw(t, label+".children")
		for i := range n {
			p.children = append(p.children, drawProv(t, fmt.Sprintf("%s.%d", label, i), depth+1, mode, r5))
		}
	}
	return p
}

func drawConsent(t *rapid.T, id string, mode typeMode) genConsent {
	c := genConsent{id: id, r5: rapid.Bool().Draw(t, id+".r5"), date: rapid.SampledFrom(propDates).Draw(t, id+".date")}
	if c.r5 {
		switch mode {
		case denyOnly:
			c.decision = rapid.SampledFrom([]string{"deny", ""}).Draw(t, id+".decision")
		case permitOnly:
			c.decision = "permit"
		default:
			c.decision = rapid.SampledFrom([]string{"permit", "deny", ""}).Draw(t, id+".decision")
		}
		c.root = &genProv{}
		if mode == anyTypes || c.decision == "" {
			n := rapid.IntRange(0, 2).Draw(t, id+".provisions")
			for i := range n {
				c.root.children = append(c.root.children, drawProv(t, fmt.Sprintf("%s.p%d", id, i), 1, anyTypes, true))
			}
		}
		return c
	}
	switch mode {
	case denyOnly:
		c.policyRule = rapid.SampledFrom([]string{"", "OPTOUT", "hipaa-self-pay"}).Draw(t, id+".policyRule")
	case permitOnly:
		c.policyRule = rapid.SampledFrom([]string{"", "OPTIN", "hipaa-self-pay"}).Draw(t, id+".policyRule")
	default:
		c.policyRule = rapid.SampledFrom([]string{"", "OPTIN", "OPTOUT", "hipaa-self-pay"}).Draw(t, id+".policyRule")
	}
	if rapid.IntRange(0, 5).Draw(t, id+".hasRoot") > 0 {
		c.root = drawProv(t, id+".root", 0, mode, false)
		if mode != anyTypes && rapid.Bool().Draw(t, id+".untypedRoot") {
			c.root.typ = "" // the base is then the policyRule, or none
		}
	}
	return c
}

func drawConsents(t *rapid.T, mode typeMode) []genConsent {
	n := rapid.IntRange(1, 3).Draw(t, "consents")
	cs := make([]genConsent, n)
	for i := range cs {
		cs[i] = drawConsent(t, fmt.Sprint("c", i), mode)
	}
	return cs
}

func drawRequest(t *rapid.T) *chaperonev1.CheckRequest {
	subj := rapid.SampledFrom(propSubjects).Draw(t, "req.subject")
	kind := "practitioner"
	if strings.HasPrefix(subj, "RelatedPerson/") {
		kind = "related-person"
	}
	r := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: subj, Kind: kind, Organization: rapid.SampledFrom(propOrgs).Draw(t, "req.org"),
			Roles: rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"clinician", "IRCP", "nurse"}), 0, 2, rapid.ID).Draw(t, "req.roles")},
		Action:       rapid.SampledFrom(propActions).Draw(t, "req.action"),
		PurposeOfUse: rapid.SampledFrom(propPurposes).Draw(t, "req.purpose"),
		Resource: &chaperonev1.Resource{Type: rapid.SampledFrom(propTypes).Draw(t, "req.type"), Patient: "Patient/52",
			Date: timestamppb.New(day(rapid.SampledFrom(propDates).Draw(t, "req.date")))},
		Context: &chaperonev1.Context{Time: timestamppb.New(propTime)},
	}
	if r.Action != "search" && r.Action != "export" || rapid.Bool().Draw(t, "req.hasID") {
		r.Resource.Id = "x1"
	}
	if r.Resource.Id == "" && rapid.Bool().Draw(t, "req.unlabelled") {
		// a search no security label criterion can match
		return withIdentifiers(t, r)
	}
	for _, i := range rapid.SliceOfNDistinct(rapid.IntRange(0, len(propLabels)-1), 0, 2, rapid.ID).Draw(t, "req.labels") {
		l := propLabels[i]
		r.Resource.SecurityLabels = append(r.Resource.SecurityLabels, &chaperonev1.Coding{System: l.System, Code: l.Code})
	}
	return withIdentifiers(t, r)
}

// withIdentifiers adds subject and organization identifiers to r.
func withIdentifiers(t *rapid.T, r *chaperonev1.CheckRequest) *chaperonev1.CheckRequest {
	nIDs := rapid.IntRange(0, 2).Draw(t, "req.identifiers")
	for i := range nIDs {
		id := &chaperonev1.Identifier{System: rapid.SampledFrom(propSystems).Draw(t, fmt.Sprint("req.id", i, ".system")),
			Value: rapid.SampledFrom(propValues).Draw(t, fmt.Sprint("req.id", i, ".value"))}
		if rapid.Bool().Draw(t, fmt.Sprint("req.id", i, ".org")) {
			r.Subject.OrganizationIdentifiers = append(r.Subject.OrganizationIdentifiers, id)
		} else {
			r.Subject.Identifiers = append(r.Subject.Identifiers, id)
		}
	}
	return r
}

// JSON rendering.

func (p *genProv) json(r5 bool) map[string]any {
	m := map[string]any{}
	if p.typ != "" && !r5 {
		m["type"] = p.typ
	}
	var actors []any
	for _, a := range p.actors {
		am := map[string]any{}
		if a.role != "" {
			am["role"] = map[string]any{"coding": []any{map[string]any{"system": fhirconsent.SystemParticipation, "code": a.role}}}
		}
		switch {
		case a.reference != "":
			am["reference"] = map[string]any{"reference": a.reference}
		case a.value != "":
			id := map[string]any{"value": a.value}
			if a.system != "" {
				id["system"] = a.system
			}
			am["reference"] = map[string]any{"identifier": id}
		}
		actors = append(actors, am)
	}
	if actors != nil {
		m["actor"] = actors
	}
	var acts []any
	for _, a := range p.actions {
		acts = append(acts, map[string]any{"coding": []any{map[string]any{"system": fhirconsent.SystemConsentAction, "code": a}}})
	}
	if acts != nil {
		m["action"] = acts
	}
	var purposes []any
	for _, pu := range p.purposes {
		purposes = append(purposes, map[string]any{"system": fhirconsent.SystemActReason, "code": pu})
	}
	if purposes != nil {
		m["purpose"] = purposes
	}
	var labels []any
	for _, i := range p.labels {
		labels = append(labels, map[string]any{"system": propLabels[i].System, "code": propLabels[i].Code})
	}
	if labels != nil {
		m["securityLabel"] = labels
	}
	var classes []any
	for _, c := range p.classes {
		classes = append(classes, map[string]any{"system": fhirconsent.SystemResourceTypes, "code": c})
	}
	if classes != nil {
		if r5 {
			m["resourceType"] = classes
		} else {
			m["class"] = classes
		}
	}
	if p.period != nil {
		m["period"] = map[string]any{"start": p.period[0], "end": p.period[1]}
	}
	var kids []any
	for _, ch := range p.children {
		kids = append(kids, ch.json(r5))
	}
	if kids != nil {
		m["provision"] = kids
	}
	return m
}

func (c genConsent) json() []byte {
	m := map[string]any{"resourceType": "Consent", "id": c.id, "status": "active"}
	privacy := []any{map[string]any{"coding": []any{map[string]any{"system": fhirconsent.SystemConsentScope, "code": "patient-privacy"}}}}
	if c.r5 {
		m["subject"] = map[string]any{"reference": "Patient/52"}
		m["date"] = c.date
		m["category"] = privacy
		if c.decision != "" {
			m["decision"] = c.decision
		}
		var ps []any
		for _, ch := range c.root.children {
			ps = append(ps, ch.json(true))
		}
		if ps != nil {
			m["provision"] = ps
		}
	} else {
		m["patient"] = map[string]any{"reference": "Patient/52"}
		m["dateTime"] = c.date
		m["scope"] = privacy[0]
		if c.policyRule != "" {
			m["policyRule"] = map[string]any{"coding": []any{map[string]any{"code": c.policyRule}}}
		}
		if c.root != nil {
			m["provision"] = c.root.json(false)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func compile(t *rapid.T, gcs []genConsent) []*fhirconsent.Consent {
	out := make([]*fhirconsent.Consent, 0, len(gcs))
	for _, g := range gcs {
		js := g.json()
		c, err := fhirconsent.Parse(js)
		if err != nil {
			t.Fatalf("generated consent does not parse: %v\n%s", err, js)
		}
		out = append(out, c.WithID(g.id, "1"))
	}
	return out
}

func evalAt(req *chaperonev1.CheckRequest, rule consent.Rule, cs []*fhirconsent.Consent) consent.Result {
	q := consent.NewQuery(req, propTime)
	return consent.Evaluate(&q, cs, rule)
}

var propRules = []consent.Rule{consent.MostRecent, consent.DenyOverrides}

// propRounds is how many times each property runs rapid's default number
// of cases (100, or -rapid.checks): the shapes that break a rule are
// rare among all generated consents.
const propRounds = 10

// checkProperty runs prop over propRounds rounds of generated cases.
func checkProperty(t *testing.T, prop func(*rapid.T)) {
	t.Helper()
	for range propRounds {
		rapid.Check(t, prop)
		if t.Failed() {
			return
		}
	}
}

// provisionAt finds the compiled provision a Result names ("Consent/<id>#<path>").
func provisionAt(cs []*fhirconsent.Consent, ref string) *fhirconsent.Provision {
	for _, c := range cs {
		var walk func(p *fhirconsent.Provision) *fhirconsent.Provision
		walk = func(p *fhirconsent.Provision) *fhirconsent.Provision {
			if p.RefSlice()[0] == ref {
				return p
			}
			for _, ch := range p.Children {
				if f := walk(ch); f != nil {
					return f
				}
			}
			return nil
		}
		if f := walk(c.Root); f != nil {
			return f
		}
	}
	return nil
}

// TestPropertyDenyOnlyNeverPermits: consents whose every provision denies
// (or has no effect) never make a PERMIT, whatever the request.
func TestPropertyDenyOnlyNeverPermits(t *testing.T) {
	t.Parallel()
	checkProperty(t, func(t *rapid.T) {
		cs := compile(t, drawConsents(t, denyOnly))
		for _, c := range cs {
			var walk func(p *fhirconsent.Provision)
			walk = func(p *fhirconsent.Provision) {
				if p.Effect == fhirconsent.Permit {
					t.Fatalf("generator made a permit provision %s in a deny-only consent:\n%s", p.Path, c.Raw)
				}
				for _, ch := range p.Children {
					walk(ch)
				}
			}
			walk(c.Root)
		}
		req := drawRequest(t)
		// and the same request as a search that no label can match (the
		// residual case: labelled denies become labels to redact)
		search := cloneReq(req)
		search.Action = "search"
		search.Resource = &chaperonev1.Resource{Type: req.GetResource().GetType(), Patient: req.GetResource().GetPatient()}
		for _, r := range []*chaperonev1.CheckRequest{req, search} {
			for _, rule := range propRules {
				if res := evalAt(r, rule, cs); res.Decision == consent.Permit {
					t.Fatalf("%v: deny-only consents made PERMIT for %s (provisions %v, redact %v)", rule, r.GetAction(), res.Provisions, res.RedactLabels)
				}
			}
		}
	})
}

// TestPropertyPermitNamesPermitProvisions: a PERMIT names only provisions
// of type permit, and at least one.
func TestPropertyPermitNamesPermitProvisions(t *testing.T) {
	t.Parallel()
	checkProperty(t, func(t *rapid.T) {
		cs := compile(t, drawConsents(t, anyTypes))
		req := drawRequest(t)
		for _, rule := range propRules {
			res := evalAt(req, rule, cs)
			if res.Decision != consent.Permit {
				continue
			}
			if len(res.Provisions) == 0 {
				t.Fatalf("%v: PERMIT names no provision", rule)
			}
			for _, ref := range res.Provisions {
				p := provisionAt(cs, ref)
				if p == nil || p.Effect != fhirconsent.Permit {
					t.Fatalf("%v: PERMIT names %s, which is not a permit provision (%v)", rule, ref, p)
				}
			}
		}
	})
}

// TestPropertyIdentifierNeedsItsSystem: subject identifiers whose system
// differs from that of every consent actor identifier with the same value
// (another system, or none where the consent has one, or one where the
// consent has none) match nothing: the answer is that for a subject
// without identifiers.
func TestPropertyIdentifierNeedsItsSystem(t *testing.T) {
	t.Parallel()
	checkProperty(t, func(t *rapid.T) {
		gcs := drawConsents(t, anyTypes)
		cs := compile(t, gcs)
		req := drawRequest(t)
		// Systems the consents use with each value.
		used := map[string][]string{}
		var walk func(p *genProv)
		walk = func(p *genProv) {
			for _, a := range p.actors {
				if a.value != "" {
					used[a.value] = append(used[a.value], a.system)
				}
			}
			for _, ch := range p.children {
				walk(ch)
			}
		}
		for _, g := range gcs {
			if g.root != nil {
				walk(g.root)
			}
		}
		respell := func(ids []*chaperonev1.Identifier) []*chaperonev1.Identifier {
			var out []*chaperonev1.Identifier
			for i, id := range ids {
				// another system, or none, or the same with a trailing
				// character: whichever no consent uses with this value
				options := []string{"", "urn:example:c", id.GetSystem() + "x", "urn:example:a", "urn:example:b"}
				sys := rapid.SampledFrom(options).Draw(t, fmt.Sprint("respell", i))
				if slices.Contains(used[id.GetValue()], sys) {
					continue // this spelling would be the same identifier: drop it
				}
				out = append(out, &chaperonev1.Identifier{System: sys, Value: id.GetValue()})
			}
			return out
		}
		bare := cloneReq(req)
		bare.Subject.Identifiers, bare.Subject.OrganizationIdentifiers = nil, nil
		other := cloneReq(req)
		other.Subject.Identifiers = respell(req.Subject.Identifiers)
		other.Subject.OrganizationIdentifiers = respell(req.Subject.OrganizationIdentifiers)
		for _, rule := range propRules {
			want, got := evalAt(bare, rule, cs), evalAt(other, rule, cs)
			if !sameResult(want, got) {
				t.Fatalf("%v: identifiers %v / %v that no consent names changed the answer: %+v, without identifiers %+v",
					rule, other.Subject.Identifiers, other.Subject.OrganizationIdentifiers, got, want)
			}
		}
	})
}

// TestPropertyRemovingAPermitNeverPermits: removing a permit provision (a
// leaf: one without exceptions below it) or a consent without any deny
// never turns DENY or NO_CONSENT into PERMIT.
func TestPropertyRemovingAPermitNeverPermits(t *testing.T) {
	t.Parallel()
	checkProperty(t, func(t *rapid.T) {
		gcs := drawConsents(t, anyTypes)
		cs := compile(t, gcs)
		req := drawRequest(t)
		before := map[consent.Rule]consent.Result{}
		for _, rule := range propRules {
			before[rule] = evalAt(req, rule, cs)
		}
		var after [][]genConsent
		// every leaf permit provision, removed one at a time
		for i := range gcs {
			for _, path := range leafPermits(gcs[i]) {
				mod := slices.Clone(gcs)
				mod[i] = removeAt(gcs[i], path)
				after = append(after, mod)
			}
		}
		// every consent whose compiled tree has no deny, removed
		for i, c := range cs {
			if !hasEffect(c.Root, fhirconsent.Deny) {
				after = append(after, slices.Delete(slices.Clone(gcs), i, i+1))
			}
		}
		for _, mod := range after {
			mcs := compile(t, mod)
			for _, rule := range propRules {
				if before[rule].Decision == consent.Permit {
					continue
				}
				if got := evalAt(req, rule, mcs); got.Decision == consent.Permit {
					t.Fatalf("%v: removing a permit turned %v into PERMIT (%v)", rule, before[rule].Decision, got.Provisions)
				}
			}
		}
	})
}

// leafPermits are the paths (child indexes from the root) of the permit
// provisions without children: typed permit in R4, in R5 a provision
// directly below a deny decision, or three levels down.
func leafPermits(c genConsent) [][]int {
	var out [][]int
	var walk func(p *genProv, path []int, effect string)
	walk = func(p *genProv, path []int, effect string) {
		for i, ch := range p.children {
			e := ch.typ
			if c.r5 || e == "" {
				e = opposite(effect)
			}
			if e == "permit" && len(ch.children) == 0 {
				out = append(out, append(slices.Clone(path), i))
			}
			walk(ch, append(slices.Clone(path), i), e)
		}
	}
	if c.root == nil {
		return nil
	}
	if c.r5 {
		walk(c.root, nil, c.decision)
	} else {
		root := c.root.typ
		if root == "" {
			switch c.policyRule {
			case "OPTIN":
				root = "permit"
			case "OPTOUT":
				root = "deny"
			}
		}
		walk(c.root, nil, root)
	}
	return out
}

func opposite(e string) string {
	switch e {
	case "permit":
		return "deny"
	case "deny":
		return "permit"
	}
	return ""
}

// removeAt is c without the provision at path.
func removeAt(c genConsent, path []int) genConsent {
	var clone func(p *genProv) *genProv
	clone = func(p *genProv) *genProv {
		cp := *p
		cp.children = nil
		for _, ch := range p.children {
			cp.children = append(cp.children, clone(ch))
		}
		return &cp
	}
	c.root = clone(c.root)
	p := c.root
	for _, i := range path[:len(path)-1] {
		p = p.children[i]
	}
	p.children = slices.Delete(p.children, path[len(path)-1], path[len(path)-1]+1)
	return c
}

func hasEffect(p *fhirconsent.Provision, e fhirconsent.Effect) bool {
	if p.Effect == e {
		return true
	}
	for _, ch := range p.Children {
		if hasEffect(ch, e) {
			return true
		}
	}
	return false
}

func cloneReq(r *chaperonev1.CheckRequest) *chaperonev1.CheckRequest {
	s := r.GetSubject()
	return &chaperonev1.CheckRequest{Action: r.GetAction(), PurposeOfUse: r.GetPurposeOfUse(), Context: r.GetContext(), Resource: r.GetResource(),
		Subject: &chaperonev1.Subject{Id: s.GetId(), Kind: s.GetKind(), Organization: s.GetOrganization(), Roles: s.GetRoles(),
			Identifiers: s.GetIdentifiers(), OrganizationIdentifiers: s.GetOrganizationIdentifiers()}}
}

func sameResult(a, b consent.Result) bool {
	return a.Decision == b.Decision && slices.Equal(a.Provisions, b.Provisions) && slices.Equal(a.Consents, b.Consents) &&
		slices.Equal(a.RedactLabels, b.RedactLabels) && a.NamesSubject == b.NamesSubject && a.NamesRecipient == b.NamesRecipient &&
		a.RestrictsRecipient == b.RestrictsRecipient
}

// TestPropertyGeneratorCoverage: the generators reach every decision and
// residual redaction without a permit, so the properties above are not
// vacuous.
func TestPropertyGeneratorCoverage(t *testing.T) {
	t.Parallel()
	gen := rapid.Custom(func(t *rapid.T) consent.Result {
		cs := compile(t, drawConsents(t, anyTypes))
		return evalAt(drawRequest(t), consent.MostRecent, cs)
	})
	seen := map[string]int{}
	for i := range 2000 {
		res := gen.Example(i)
		key := res.Decision.String()
		if len(res.RedactLabels) > 0 {
			key += "+redact"
		}
		seen[key]++
	}
	for _, k := range []string{"PERMIT", "PERMIT+redact", "DENY", "NO_CONSENT", "NO_CONSENT+redact"} {
		if seen[k] == 0 {
			t.Errorf("no generated case decided %s (%v)", k, seen)
		}
	}
	t.Logf("decisions over 2000 generated cases: %v", seen)
}
