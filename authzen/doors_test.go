package authzen_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/authzen"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// genRequest builds a request over the reference bundle's vocabulary: a
// clinician reading in the own organization, with a few of its parts
// changed; about one in twelve breaks a rule of the API.
func genRequest(r *rand.Rand) *chaperonev1.CheckRequest {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "x1", Patient: "Patient/52", Organization: "Organization/o1"},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{NetworkZone: "clinic", DeviceTrust: "managed"},
	}
	changes := []func(){
		func() {
			req.Subject.Roles = []string{pick("nurse", "care-coordinator", "billing", "pharmacist", "researcher", "admin", "clinician")}
		},
		func() { req.Subject.Organization = pick("Organization/o2", "") },
		func() {
			req.Subject.Kind, req.Subject.Id = "patient", "Patient/"+pick("51", "52")
			req.Subject.Roles, req.Subject.Organization = nil, ""
			req.Subject.LaunchPatient = pick("Patient/51", "Patient/52", "")
			req.Subject.Scopes = []string{pick("patient/*.rs", "patient/Observation.rs", "user/*.rs")}
		},
		func() { req.Action = pick("search", "create", "update", "delete", "export", "vread", "history") },
		func() {
			req.Resource.Type = pick("Encounter", "Condition", "MedicationRequest", "ServiceRequest", "ExplanationOfBenefit", "Patient", "Appointment")
		},
		func() { req.Resource.Id = "" },
		func() { req.Resource.Patient = pick("Patient/51", "") },
		func() { req.Resource.Organization = pick("Organization/o2", "") },
		func() {
			req.Resource.SecurityLabels = []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: pick("ETH", "SUD", "HIV", "PSY")}}
		},
		func() { req.PurposeOfUse = pick("ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "CAREMGT") },
		func() { req.Context.NetworkZone = pick("home", "internet", "") },
		func() { req.Context.DeviceTrust = pick("unmanaged", "") },
		func() { req.Context.BreakGlassReason = "patient unconscious in the emergency department" },
	}
	for _, change := range changes {
		if r.IntN(8) == 0 {
			change()
		}
	}
	if r.IntN(12) == 0 { // invalid input
		switch r.IntN(3) {
		case 0:
			req.Context.DeviceTrust = "Managed"
		case 1:
			req.Resource.Patient = "patient/51"
		default:
			req.Subject.Roles = append(req.Subject.Roles, "")
		}
	}
	return req
}

// asAuthZEN is req as an AuthZEN evaluation request.
func asAuthZEN(req *chaperonev1.CheckRequest) string {
	codings := func(cs []*chaperonev1.Coding) []map[string]string {
		var out []map[string]string
		for _, c := range cs {
			out = append(out, map[string]string{"system": c.GetSystem(), "code": c.GetCode()})
		}
		return out
	}
	s, res, c := req.GetSubject(), req.GetResource(), req.GetContext()
	sp := map[string]any{"roles": s.GetRoles(), "scopes": s.GetScopes()}
	if s.GetOrganization() != "" {
		sp["organization"] = s.GetOrganization()
	}
	if s.GetLaunchPatient() != "" {
		sp["launchPatient"] = s.GetLaunchPatient()
	}
	rp := map[string]any{"patient": res.GetPatient(), "organization": res.GetOrganization()}
	if len(res.GetSecurityLabels()) > 0 {
		rp["securityLabels"] = codings(res.GetSecurityLabels())
	}
	m := map[string]any{
		"subject":  map[string]any{"type": s.GetKind(), "id": s.GetId(), "properties": sp},
		"action":   map[string]any{"name": req.GetAction()},
		"resource": map[string]any{"type": res.GetType(), "id": res.GetId(), "properties": rp},
		"context": map[string]any{"purposeOfUse": req.GetPurposeOfUse(), "networkZone": c.GetNetworkZone(),
			"deviceTrust": c.GetDeviceTrust(), "breakGlassReason": c.GetBreakGlassReason()},
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// outcome is what both doors must agree on.
type outcome struct {
	decision    bool
	reasons     string
	obligations string
	invalid     bool
}

func checkOutcome(t *testing.T, body []byte, status int) (outcome, string) {
	t.Helper()
	if status == 400 {
		return outcome{invalid: true}, ""
	}
	var resp chaperonev1.CheckResponse
	if err := protojson.Unmarshal(body, &resp); err != nil {
		t.Fatalf("status %d: %s: %v", status, body, err)
	}
	var codes []string
	for _, r := range resp.GetReasons() {
		codes = append(codes, r.GetCode())
	}
	o := resp.GetObligations()
	var obl []string
	if len(o.GetMaskPaths()) > 0 {
		obl = append(obl, "fhir-mask:"+strings.Join(o.GetMaskPaths(), " "))
	}
	if len(o.GetRedactLabels()) > 0 {
		var ls []string
		for _, l := range o.GetRedactLabels() {
			ls = append(ls, l.GetSystem()+"|"+l.GetCode())
		}
		obl = append(obl, "fhir-redact-labels:"+strings.Join(ls, " "))
	}
	if len(o.GetAuditTags()) > 0 {
		obl = append(obl, "audit-tags:"+strings.Join(o.GetAuditTags(), " "))
	}
	if o.GetPerEntryCheck() {
		obl = append(obl, "per-entry-check:")
	}
	return outcome{decision: resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW, reasons: strings.Join(codes, ","), obligations: strings.Join(obl, ";")}, resp.GetDecisionId()
}

func authzenOutcome(t *testing.T, body []byte) (outcome, string) {
	t.Helper()
	var m struct {
		Decision bool `json:"decision"`
		Context  struct {
			DecisionID  string   `json:"decision_id"`
			Reasons     []string `json:"reasons"`
			Obligations []struct {
				Type       string `json:"type"`
				Properties struct {
					Paths  []string `json:"paths"`
					Labels []struct{ System, Code string }
					Tags   []string `json:"tags"`
				} `json:"properties"`
			} `json:"obligations"`
		} `json:"context"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if slices.Equal(m.Context.Reasons, []string{authzen.ReasonInvalidRequest}) && m.Context.DecisionID == "" {
		return outcome{invalid: true}, ""
	}
	var obl []string
	for _, o := range m.Context.Obligations {
		var v string
		switch o.Type {
		case "fhir-mask":
			v = strings.Join(o.Properties.Paths, " ")
		case "fhir-redact-labels":
			var ls []string
			for _, l := range o.Properties.Labels {
				ls = append(ls, l.System+"|"+l.Code)
			}
			v = strings.Join(ls, " ")
		case "audit-tags":
			v = strings.Join(o.Properties.Tags, " ")
		}
		obl = append(obl, o.Type+":"+v)
	}
	return outcome{decision: m.Decision, reasons: strings.Join(m.Context.Reasons, ","), obligations: strings.Join(obl, ";")}, m.Context.DecisionID
}

// TestOneDecisionTwoDoors: the same generated requests through Check
// (Connect JSON) and AuthZEN get the same decisions, reasons and
// obligations, one audit record each; an invalid request is invalid on
// both doors and audited on neither.
func TestOneDecisionTwoDoors(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	r := rand.New(rand.NewPCG(17, 5))
	var valid, invalid, allows, withObligations int
	for i := range 200 {
		req := genRequest(r)
		cj, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		az := asAuthZEN(req)
		cr := post(t, srv.url+"/chaperone.v1.DecisionService/Check", string(cj))
		want, checkID := checkOutcome(t, cr.body, cr.status)
		ar := post(t, srv.url+authzen.EvaluationPath, az)
		if ar.status != 200 {
			t.Fatalf("request %d: AuthZEN status %d: %s", i, ar.status, ar.body)
		}
		got, azID := authzenOutcome(t, ar.body)
		if got != want {
			t.Fatalf("request %d differs:\nCheck   %+v %s\nAuthZEN %+v %s\n%s", i, want, cr.body, got, ar.body, az)
		}
		counts := byDecisionID(srv.recorder)
		if want.invalid {
			invalid++
			continue
		}
		valid++
		if want.decision {
			allows++
		}
		if want.obligations != "" {
			withObligations++
		}
		if checkID == azID || counts[checkID] != 1 || counts[azID] != 1 {
			t.Fatalf("request %d: audit records %d (Check %s) and %d (AuthZEN %s), want one each", i, counts[checkID], checkID, counts[azID], azID)
		}
	}
	if n := len(srv.recorder.All()); n != 2*valid {
		t.Fatalf("%d audit records for %d valid requests on two doors", n, valid)
	}
	if invalid == 0 || allows == 0 || allows == valid || withObligations == 0 {
		t.Fatalf("generator too narrow: %d valid (%d allowed, %d with obligations), %d invalid", valid, allows, withObligations, invalid)
	}
	t.Logf("%d valid requests (%d allowed, %d with obligations), %d invalid", valid, allows, withObligations, invalid)
}
