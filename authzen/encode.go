package authzen

import (
	"time"

	"github.com/go-json-experiment/json"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Encode writes req as an AuthZEN access evaluation request, the inverse of
// the door's mapping: what a client (or the load generator) sends to ask
// the same question over AuthZEN. Empty fields are left out.
func Encode(req *chaperonev1.CheckRequest) ([]byte, error) {
	s, r, c := req.GetSubject(), req.GetResource(), req.GetContext()
	type props = map[string]any
	sp, rp, cp := props{}, props{}, props{}
	set := func(m props, k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	codings := func(cs []*chaperonev1.Coding) []codingJSON {
		out := make([]codingJSON, len(cs))
		for i, x := range cs {
			out[i] = codingJSON{System: x.GetSystem(), Code: x.GetCode()}
		}
		return out
	}
	ids := func(is []*chaperonev1.Identifier) []identifierJSON {
		out := make([]identifierJSON, len(is))
		for i, x := range is {
			out[i] = identifierJSON{System: x.GetSystem(), Value: x.GetValue()}
		}
		return out
	}
	set(sp, "roles", s.GetRoles(), len(s.GetRoles()) > 0)
	set(sp, "scopes", s.GetScopes(), len(s.GetScopes()) > 0)
	set(sp, "organization", s.GetOrganization(), s.GetOrganization() != "")
	set(sp, "clientId", s.GetClientId(), s.GetClientId() != "")
	set(sp, "launchPatient", s.GetLaunchPatient(), s.GetLaunchPatient() != "")
	set(sp, "identifiers", ids(s.GetIdentifiers()), len(s.GetIdentifiers()) > 0)
	set(sp, "organizationIdentifiers", ids(s.GetOrganizationIdentifiers()), len(s.GetOrganizationIdentifiers()) > 0)
	set(rp, "patient", r.GetPatient(), r.GetPatient() != "")
	set(rp, "organization", r.GetOrganization(), r.GetOrganization() != "")
	set(rp, "author", r.GetAuthor(), r.GetAuthor() != "")
	set(rp, "securityLabels", codings(r.GetSecurityLabels()), len(r.GetSecurityLabels()) > 0)
	set(rp, "codes", codings(r.GetCodes()), len(r.GetCodes()) > 0)
	set(rp, "categories", codings(r.GetCategories()), len(r.GetCategories()) > 0)
	set(rp, "profiles", r.GetProfiles(), len(r.GetProfiles()) > 0)
	set(rp, "date", r.GetDate().AsTime().UTC().Format(time.RFC3339Nano), r.GetDate() != nil)
	set(cp, "purposeOfUse", req.GetPurposeOfUse(), req.GetPurposeOfUse() != "")
	set(cp, "breakGlassReason", c.GetBreakGlassReason(), c.GetBreakGlassReason() != "")
	set(cp, "networkZone", c.GetNetworkZone(), c.GetNetworkZone() != "")
	set(cp, "deviceTrust", c.GetDeviceTrust(), c.GetDeviceTrust() != "")
	set(cp, "ip", c.GetIp(), c.GetIp() != "")
	set(cp, "correlationId", c.GetCorrelationId(), c.GetCorrelationId() != "")
	set(cp, "phase", c.GetPhase(), c.GetPhase() != "")
	set(cp, "time", c.GetTime().AsTime().UTC().Format(time.RFC3339Nano), c.GetTime() != nil)
	return json.Marshal(props{
		"subject":  props{"type": s.GetKind(), "id": s.GetId(), "properties": sp},
		"action":   props{"name": req.GetAction()},
		"resource": props{"type": r.GetType(), "id": r.GetId(), "properties": rp},
		"context":  cp,
	}, json.Deterministic(true))
}
