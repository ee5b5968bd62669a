package authzen

import (
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Obligation types of the AuthZEN obligations profile Chaperone answers
// with, one obligation of each at most, its id the type.
const (
	// ObligationMask: remove or mask the FHIR element paths in
	// properties.paths.
	ObligationMask = "fhir-mask"
	// ObligationRedactLabels: leave out resources carrying a security
	// label in properties.labels ({system, code}).
	ObligationRedactLabels = "fhir-redact-labels"
	// ObligationAuditTags: record properties.tags with the caller's own
	// audit of the access.
	ObligationAuditTags = "audit-tags"
	// ObligationPerEntryCheck: decide every returned resource before
	// releasing it.
	ObligationPerEntryCheck = "per-entry-check"
)

// SupportedObligations are the obligation types an answer may carry.
func SupportedObligations() []string {
	return []string{ObligationMask, ObligationRedactLabels, ObligationAuditTags, ObligationPerEntryCheck}
}

type obligationJSON struct {
	ID         string               `json:"id"`
	Type       string               `json:"type"`
	Properties obligationProperties `json:"properties"`
}

type obligationProperties struct {
	Paths  []string     `json:"paths,omitempty"`
	Labels []codingJSON `json:"labels,omitempty"`
	Tags   []string     `json:"tags,omitempty"`
}

// obligations are o in the obligations profile; never nil.
func obligations(o *chaperonev1.Obligations) []obligationJSON {
	out := []obligationJSON{}
	if len(o.GetMaskPaths()) > 0 {
		out = append(out, obligationJSON{ID: ObligationMask, Type: ObligationMask, Properties: obligationProperties{Paths: o.GetMaskPaths()}})
	}
	if len(o.GetRedactLabels()) > 0 {
		labels := make([]codingJSON, len(o.GetRedactLabels()))
		for i, c := range o.GetRedactLabels() {
			labels[i] = codingJSON{System: c.GetSystem(), Code: c.GetCode()}
		}
		out = append(out, obligationJSON{ID: ObligationRedactLabels, Type: ObligationRedactLabels, Properties: obligationProperties{Labels: labels}})
	}
	if len(o.GetAuditTags()) > 0 {
		out = append(out, obligationJSON{ID: ObligationAuditTags, Type: ObligationAuditTags, Properties: obligationProperties{Tags: o.GetAuditTags()}})
	}
	if o.GetPerEntryCheck() {
		out = append(out, obligationJSON{ID: ObligationPerEntryCheck, Type: ObligationPerEntryCheck})
	}
	return out
}

// unsupported is the first obligation type of o missing from supported,
// "" when there is none (or supported is nil: no list was given).
func unsupported(o *chaperonev1.Obligations, supported []string) string {
	if supported == nil {
		return ""
	}
	has := func(t string) bool {
		for _, s := range supported {
			if s == t {
				return true
			}
		}
		return false
	}
	for _, need := range []struct {
		t  string
		on bool
	}{
		{ObligationMask, len(o.GetMaskPaths()) > 0},
		{ObligationRedactLabels, len(o.GetRedactLabels()) > 0},
		{ObligationAuditTags, len(o.GetAuditTags()) > 0},
		{ObligationPerEntryCheck, o.GetPerEntryCheck()},
	} {
		if need.on && !has(need.t) {
			return need.t
		}
	}
	return ""
}

// requireSupported returns the amendment that turns an ALLOW needing an
// obligation type the client lacks into DENY OBLIGATION_UNSUPPORTED, before
// the decision is recorded; nil when the client gave no list.
func requireSupported(supported []string) func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
	if supported == nil {
		return nil
	}
	return func(resp *chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
		if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
			return resp
		}
		t := unsupported(resp.GetObligations(), supported)
		if t == "" {
			return resp
		}
		return &chaperonev1.CheckResponse{
			Decision:       chaperonev1.Decision_DECISION_DENY,
			Obligations:    &chaperonev1.Obligations{},
			Reasons:        []*chaperonev1.Reason{{Code: ReasonObligationUnsupported, Message: "the answer needs obligation type " + t + ", missing from context.supported_obligations"}},
			DecisionId:     resp.GetDecisionId(),
			BundleRevision: resp.GetBundleRevision(),
			CacheTtl:       resp.GetCacheTtl(),
			Consents:       resp.GetConsents(),
		}
	}
}
