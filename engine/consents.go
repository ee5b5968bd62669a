package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// ConsentLookup is what the engine reads of a consent store on the hot
// path: the compiled consents of one patient.
type ConsentLookup interface {
	ForPatient(ctx context.Context, patient string) (consentstore.Set, error)
}

// StoreConsents evaluates the FHIR consents held in a store
// ([engine/consent] semantics) for every request about a patient.
func StoreConsents(store ConsentLookup) ConsentEvaluator {
	return storeConsents{store: store}
}

type storeConsents struct {
	store ConsentLookup
}

func (s storeConsents) EvaluateConsent(ctx context.Context, req *chaperonev1.CheckRequest, at time.Time, r consent.Rule) (ConsentResult, error) {
	q := consent.NewQuery(req, at)
	set, err := s.store.ForPatient(ctx, q.Patient())
	if err != nil {
		return ConsentResult{}, fmt.Errorf("consents of the patient: %w", err)
	}
	res := consent.Evaluate(&q, set.Consents, r)
	out := ConsentResult{Decision: ConsentDecision(res.Decision.String()), Provisions: res.Provisions, NamesSubject: res.NamesSubject, NamesRecipient: res.NamesRecipient,
		RestrictsRecipient: res.RestrictsRecipient}
	if c := res.Deciding; c != nil {
		d := DecidingConsent{ID: c.ID, Scope: c.Scope.String(), Purposes: res.DecidingPurposes()}
		if p := res.DecidingProvision; p != nil {
			d.Provision = p.Path
		}
		for _, cd := range c.Categories {
			d.Categories = append(d.Categories, cd.System+"|"+cd.Code)
		}
		out.Deciding = d
	}
	if len(res.Consents) > 0 {
		out.Consents = make([]*chaperonev1.ConsentRef, len(res.Consents))
		for i, c := range res.Consents {
			out.Consents[i] = &chaperonev1.ConsentRef{Id: c.ID, Version: c.Version}
		}
	}
	for _, l := range res.RedactLabels {
		out.RedactLabels = append(out.RedactLabels, &chaperonev1.Coding{System: l.System, Code: l.Code})
	}
	return out, nil
}
