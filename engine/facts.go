package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chaperone-pdp/chaperone/access"
)

// GrantLookup finds an active break-glass grant of a subject for a patient.
type GrantLookup interface {
	ActiveGrant(ctx context.Context, subject, patient string, at time.Time) (access.Grant, bool, error)
}

// AgreementLookup finds the vendor agreement of a client application;
// [access.ErrNotFound] means the client has none.
type AgreementLookup interface {
	GetAgreement(ctx context.Context, clientID string) (access.Agreement, error)
}

// RelationshipLookup says whether a practitioner has a treating
// relationship with a patient that holds at a time.
type RelationshipLookup interface {
	ActiveRelationship(ctx context.Context, practitioner, patient string, at time.Time) (bool, error)
}

// WithRelationships makes treating relationships visible to policies
// (context.treatingRelationship in Cedar, input.facts.treatingRelationship
// in Rego). They are looked up only for bundles whose policies name
// treatingRelationship, for a subject of kind practitioner and a request
// about a patient; a lookup that fails denies RELATIONSHIP_UNAVAILABLE.
// Without a lookup the fact is false.
func WithRelationships(r RelationshipLookup) Option { return func(e *Engine) { e.relationships = r } }

// WithGrants makes active break-glass grants visible to policies
// (context.breakGlassGrant in Cedar, input.facts.breakGlassGrant in Rego).
func WithGrants(g GrantLookup) Option { return func(e *Engine) { e.grants = g } }

// WithAgreements makes vendor agreements visible to policies
// (context.agreement in Cedar, input.facts.agreement in Rego).
func WithAgreements(a AgreementLookup) Option { return func(e *Engine) { e.agreements = a } }

// agreementFact is what policies see of the client's agreement.
type agreementFact struct {
	exists        bool
	active        bool // signed, not revoked, not expired at the decision time
	covers        bool // active and its purposes and resource types cover the request
	vendor, tier  string
	purposes      []string
	resourceTypes []string
}

// errFactsUnavailable wraps a failed lookup of grants or agreements.
type factError struct {
	code string
	err  error
}

func (e *factError) Error() string { return e.code + ": " + e.err.Error() }
func (e *factError) Unwrap() error { return e.err }

// gatherAccessFacts looks up the break-glass grant, the vendor agreement and
// the SMART scope facts of the request.
func (e *Engine) gatherAccessFacts(ctx context.Context, f *facts) error {
	req := f.req
	f.scopes = evaluateScopes(req)
	if e.grants != nil && req.GetResource().GetPatient() != "" {
		_, ok, err := e.grants.ActiveGrant(ctx, req.GetSubject().GetId(), req.GetResource().GetPatient(), f.exact)
		if err != nil {
			// Grants override consent, so they are part of the patient's
			// consent state: unknown grants are an unknown consent state.
			return &factError{"CONSENT_UNAVAILABLE", fmt.Errorf("break-glass grants: %w", err)}
		}
		f.grant = ok
	}
	if id := req.GetSubject().GetClientId(); id != "" && e.agreements != nil {
		a, err := e.agreements.GetAgreement(ctx, id)
		switch {
		case errors.Is(err, access.ErrNotFound):
		case err != nil:
			return &factError{"AGREEMENT_UNAVAILABLE", err}
		default:
			f.agreement = agreementFact{
				exists:        true,
				active:        a.ActiveAt(f.exact),
				vendor:        a.Vendor,
				tier:          a.Tier,
				purposes:      a.Purposes,
				resourceTypes: a.ResourceTypes,
			}
			f.agreement.covers = f.agreement.active && a.Covers(req.GetPurposeOfUse(), req.GetResource().GetType())
		}
	}
	return nil
}

// gatherRelationship looks up the treating relationship of the request's
// practitioner with its patient at the decision time, when the bundle's
// policies read it.
func (e *Engine) gatherRelationship(ctx context.Context, b *Bundle, f *facts) error {
	req := f.req
	if !b.readsRelationship || e.relationships == nil || req.GetSubject().GetKind() != "practitioner" ||
		req.GetResource().GetPatient() == "" || req.GetSubject().GetId() == "" {
		return nil
	}
	ok, err := e.relationships.ActiveRelationship(ctx, req.GetSubject().GetId(), req.GetResource().GetPatient(), f.exact)
	if err != nil {
		return &factError{"RELATIONSHIP_UNAVAILABLE", fmt.Errorf("treating relationships: %w", err)}
	}
	f.treating = ok
	return nil
}

// appendFactsKey appends the access facts to a memo key.
func appendFactsKey(buf []byte, f *facts) []byte {
	buf = strconv.AppendBool(buf, f.grant)
	buf = strconv.AppendBool(buf, f.treating)
	buf = strconv.AppendBool(buf, f.scopes.present)
	buf = strconv.AppendBool(buf, f.scopes.allows)
	for _, l := range f.scopes.levels {
		buf = append(buf, l...)
		buf = append(buf, 0)
	}
	a := &f.agreement
	buf = strconv.AppendBool(buf, a.exists)
	if a.exists {
		buf = strconv.AppendBool(buf, a.active)
		buf = strconv.AppendBool(buf, a.covers)
		for _, s := range [][]string{{a.vendor, a.tier}, a.purposes, a.resourceTypes} {
			buf = append(buf, 1)
			for _, v := range s {
				buf = append(buf, v...)
				buf = append(buf, 0)
			}
		}
	}
	return buf
}
