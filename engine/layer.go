package engine

import (
	"context"
	"slices"
	"time"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// effect is what one layer says about a request.
type effect int

const (
	notApplicable effect = iota
	permit
	deny
)

func (e effect) String() string {
	switch e {
	case permit:
		return "permit"
	case deny:
		return "deny"
	default:
		return "not-applicable"
	}
}

// facts is everything a layer may look at for one request, gathered once.
type facts struct {
	req     *chaperonev1.CheckRequest
	exact   time.Time       // the decision time
	at      time.Time       // the decision time at the bundle's resolution, as policies see it
	hour    int             // in the tenant's timezone
	minute  int             // in the tenant's timezone
	weekday string          // in the tenant's timezone: "monday" … "sunday"
	consent ConsentDecision // PERMIT, DENY or NO_CONSENT
	// consentNamesSubject: the permitting consent names the subject itself
	// as a recipient (a delegation to this person).
	consentNamesSubject bool
	// consentNamesRecipient: the permitting consent names the subject or
	// its organization as a recipient.
	consentNamesRecipient bool
	// consentRestrictsRecipient: the denying consent names the subject or
	// its organization (a restriction aimed at it).
	consentRestrictsRecipient bool
	// deciding: the consent that decided (zero for NO_CONSENT).
	deciding DecidingConsent
	grant    bool // an active break-glass grant of the subject for the patient
	treating bool // an active treating relationship of the practitioner with the patient
	// sameOrganization: subject and resource name the same organization.
	sameOrganization bool
	// population: a search, history or export of a patient-compartment
	// type naming no patient.
	population bool
	agreement  agreementFact
	scopes     scopeFacts
}

// permitHit is a permitting policy.
type permitHit struct {
	id               string
	overridesConsent bool
}

// denyHit is a denying policy with its reason code.
type denyHit struct {
	id      string
	code    string
	message string
}

// layerResult is one layer's answer.
type layerResult struct {
	effect  effect
	permits []permitHit
	denies  []denyHit
	// obligations are the permits' and the matching obligation-only
	// policies' (those alone when effect is notApplicable): they count
	// only when the combined decision is ALLOW.
	obligations    obligations
	obligationOnly []string // ids of the obligation-only policies that matched
}

// layer is one policy language's part of a bundle.
type layer interface {
	name() string
	evaluate(ctx context.Context, f *facts) (layerResult, error)
	policyIDs() []string
}

// obligations accumulates obligations without duplicates, keeping first-seen order.
type obligations struct {
	maskPaths    []string
	redactLabels []label
	auditTags    []string
}

type label struct{ system, code string }

func (o *obligations) addMask(p string) {
	if p != "" && !slices.Contains(o.maskPaths, p) {
		o.maskPaths = append(o.maskPaths, p)
	}
}

func (o *obligations) addTag(t string) {
	if t != "" && !slices.Contains(o.auditTags, t) {
		o.auditTags = append(o.auditTags, t)
	}
}

func (o *obligations) addLabel(l label) {
	if l.code != "" && !slices.Contains(o.redactLabels, l) {
		o.redactLabels = append(o.redactLabels, l)
	}
}

func (o *obligations) merge(other *obligations) {
	for _, p := range other.maskPaths {
		o.addMask(p)
	}
	for _, l := range other.redactLabels {
		o.addLabel(l)
	}
	for _, t := range other.auditTags {
		o.addTag(t)
	}
}

func (o obligations) clone() obligations {
	return obligations{
		maskPaths:    slices.Clone(o.maskPaths),
		redactLabels: slices.Clone(o.redactLabels),
		auditTags:    slices.Clone(o.auditTags),
	}
}

func (o *obligations) empty() bool {
	return len(o.maskPaths) == 0 && len(o.redactLabels) == 0 && len(o.auditTags) == 0
}

// proto converts o for a response; the slices are copied because outcomes
// are shared through the memo.
func (o *obligations) proto() *chaperonev1.Obligations {
	p := &chaperonev1.Obligations{
		MaskPaths: slices.Clone(o.maskPaths),
		AuditTags: slices.Clone(o.auditTags),
	}
	for _, l := range o.redactLabels {
		p.RedactLabels = append(p.RedactLabels, &chaperonev1.Coding{System: l.system, Code: l.code})
	}
	return p
}
