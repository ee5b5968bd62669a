package engine

import (
	"github.com/chaperone-pdp/chaperone/fhir"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Audit tags the engine adds itself, whichever policy permitted.
const (
	// TagDisclosure marks an ALLOW outside the subject's own organization
	// (other than a patient's access to its own record): a disclosure, to
	// be listed in the accounting of disclosures (45 CFR 164.528).
	TagDisclosure = "DISCLOSURE"
)

// sameOrganization: subject and resource both name an organization, and
// the same one. An organization missing on either side is never "the
// same", so a subject without one is matched by no own-organization rule.
func sameOrganization(req *chaperonev1.CheckRequest) bool {
	s, r := req.GetSubject().GetOrganization(), req.GetResource().GetOrganization()
	return s != "" && s == r
}

// ownRecord: a patient acting on its own compartment.
func ownRecord(req *chaperonev1.CheckRequest) bool {
	p := req.GetResource().GetPatient()
	return req.GetSubject().GetKind() == KindPatient && p != "" && p == req.GetSubject().GetId()
}

// Decision phases (context.phase).
const (
	// PhaseRequest: a gateway decides from the URL and the token, before
	// the data is known.
	PhaseRequest = "request"
	// PhaseResource: the resource's own attributes are given (the default).
	PhaseResource = "resource"
)

// phaseOf is the request's decision phase as policies see it: "request",
// or "resource" (also when the request names none).
func phaseOf(req *chaperonev1.CheckRequest) string {
	if req.GetContext().GetPhase() == PhaseRequest {
		return PhaseRequest
	}
	return PhaseResource
}

// population: a search, history or export of a patient-compartment type
// that names no patient, so the answer set is unknown when deciding.
func population(req *chaperonev1.CheckRequest) bool {
	return fhir.Interaction(req.GetAction()).ListsResources() &&
		req.GetResource().GetPatient() == "" &&
		fhir.InPatientCompartment(req.GetResource().GetType())
}

// engineObligations are the obligations of an ALLOW: the permitting
// policies' own, the consent's residual labels to withhold, the DISCLOSURE
// tag on every ALLOW across organizations, and perEntryCheck on a
// population request and on every request-phase ALLOW. The policies' obligations are shared with the memo
// and never modified.
func engineObligations(policy *obligations, f *facts, consentLabels []*chaperonev1.Coding) *chaperonev1.Obligations {
	// In the request phase the resource's organization is not known yet:
	// the resource phase decides whether each entry is a disclosure.
	disclosure := !f.sameOrganization && !ownRecord(f.req) && phaseOf(f.req) == PhaseResource
	obl := policy
	if len(consentLabels) > 0 || disclosure {
		c := policy.clone()
		for _, l := range consentLabels {
			c.addLabel(label{l.GetSystem(), l.GetCode()})
		}
		if disclosure {
			c.addTag(TagDisclosure)
		}
		obl = &c
	}
	out := obl.proto()
	// A request-phase ALLOW says "forward, then decide each returned
	// resource": the gateway did not see the data.
	out.PerEntryCheck = f.population || phaseOf(f.req) == PhaseRequest
	return out
}
