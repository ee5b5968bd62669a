package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// Scenario is a built-in request mix.
type Scenario struct {
	Name        string
	Description string
	Requests    []*chaperonev1.CheckRequest
	// Consents are FHIR Consent resources (JSON) the requests depend on;
	// seed them with [SeedConsents] (or `chaperone serve --consents DIR`).
	Consents [][]byte
}

// Scenarios lists the built-in scenarios by name.
func Scenarios() []string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupScenario returns the built-in scenario name.
func LookupScenario(name string) (*Scenario, error) {
	f, ok := scenarios[name]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (built in: %v)", name, Scenarios())
	}
	return f(), nil
}

var scenarios = map[string]func() *Scenario{
	"reference":      referenceScenario,
	"clinician-read": clinicianReadScenario,
	"gateway":        gatewayScenario,
}

// ScenarioTime is a fixed decision time for in-process benchmarks whose
// engine decides at the stated time. The built-in requests state no time:
// a server decides at its own clock and refuses a far-off context.time.
var ScenarioTime = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

const confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

// The patients of the reference scenario: no consent, a consent that denies
// everything, one that permits, one that permits except restricted (R) data.
const (
	patientNone       = "Patient/52"
	patientDeny       = "Patient/cd"
	patientPermit     = "Patient/cp"
	patientPermitNotR = "Patient/cl"
)

func r5Consent(id, patient, decision, provisions string) []byte {
	s := fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active",`+
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]}],`+
		`"subject":{"reference":%q},"date":"2020-01-01","decision":%q`, id, patient, decision)
	if provisions != "" {
		s += `,"provision":` + provisions
	}
	return []byte(s + "}")
}

// req builds a request of the reference scenario.
func req(subject, kind string, roles []string, org, action, rtype, patient, rorg, purpose string, labels ...string) *chaperonev1.CheckRequest {
	r := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: subject, Kind: kind, Roles: roles, Organization: org, ClientId: "portal"},
		Action:  action,
		Resource: &chaperonev1.Resource{Type: rtype, Id: "r1", Patient: patient, Organization: rorg,
			Codes: []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5"}}},
		PurposeOfUse: purpose,
		Context:      &chaperonev1.Context{NetworkZone: "clinic", DeviceTrust: "managed"},
	}
	if rtype == "Patient" {
		r.Resource.Id = patient[len("Patient/"):]
	}
	for _, l := range labels {
		r.Resource.SecurityLabels = append(r.Resource.SecurityLabels, &chaperonev1.Coding{System: confidentiality, Code: l})
	}
	return r
}

func referenceScenario() *Scenario {
	clin := []string{"clinician"}
	const (
		dr    = "Practitioner/p1"
		o1    = "Organization/o1"
		o2    = "Organization/o2"
		pract = "practitioner"
	)
	with := func(r *chaperonev1.CheckRequest, f func(*chaperonev1.CheckRequest)) *chaperonev1.CheckRequest {
		f(r)
		return r
	}
	reqs := []*chaperonev1.CheckRequest{
		// Care team reads in their organisation, by consent state.
		req(dr, pract, clin, o1, "read", "Observation", patientNone, o1, "TREAT", "N"),
		req(dr, pract, clin, o1, "search", "Condition", patientPermit, o1, "TREAT", "N"),
		req("Practitioner/n1", pract, []string{"nurse"}, o1, "read", "MedicationRequest", patientPermitNotR, o1, "TREAT", "N"),
		req(dr, pract, clin, o1, "read", "DiagnosticReport", patientNone, o1, "TREAT", "V"),
		// The patient's consent denies.
		req(dr, pract, clin, o1, "read", "Observation", patientDeny, o1, "TREAT", "N"),
		req(dr, pract, clin, o1, "read", "Condition", patientPermitNotR, o1, "TREAT", "R"),
		// Another organisation's record.
		req(dr, pract, clin, o1, "read", "Observation", patientNone, o2, "TREAT", "N"),
		// Restricted data outside treatment.
		req(dr, pract, clin, o1, "read", "Observation", patientNone, o1, "HPAYMT", "R"),
		// Break-glass: emergency treatment over a consent deny, with and without a stated reason.
		with(req(dr, pract, clin, o1, "read", "AllergyIntolerance", patientDeny, o1, "ETREAT", "N"),
			func(r *chaperonev1.CheckRequest) { r.Context.BreakGlassReason = "unconscious patient in ED" }),
		req(dr, pract, clin, o1, "read", "AllergyIntolerance", patientDeny, o1, "ETREAT", "N"),
		// The patient reads their own record, and someone else's.
		req(patientNone, "patient", []string{"patient"}, "", "read", "Observation", patientNone, o1, "PATRQT", "N"),
		req(patientNone, "patient", []string{"patient"}, "", "read", "Observation", patientPermit, o1, "PATRQT", "N"),
		// Support staff: patient contact details with masks, nothing clinical.
		with(req("Practitioner/s1", pract, []string{"support"}, o1, "read", "Patient", patientNone, o1, "HOPERAT", "N"),
			func(r *chaperonev1.CheckRequest) { r.Context.NetworkZone = "corporate" }),
		with(req("Practitioner/s1", pract, []string{"support"}, o1, "read", "Observation", patientNone, o1, "HOPERAT", "N"),
			func(r *chaperonev1.CheckRequest) { r.Context.NetworkZone = "corporate" }),
		// A write from an unmanaged device.
		with(req(dr, pract, clin, o1, "create", "Observation", patientNone, o1, "TREAT", "N"),
			func(r *chaperonev1.CheckRequest) { r.Context.DeviceTrust = "unmanaged" }),
		// Billing reads an encounter.
		req("Practitioner/b1", pract, []string{"billing"}, o1, "read", "Encounter", patientNone, o1, "HPAYMT", "N"),
	}
	return &Scenario{
		Name: "reference",
		Description: "16 requests: clinician, nurse, patient, support and billing; no consent, consent deny, " +
			"consent permit, permit except restricted data; sensitive labels; break-glass with and without a reason; " +
			"another organisation; an unmanaged device",
		Requests: reqs,
		Consents: [][]byte{
			r5Consent("bench-deny", patientDeny, "deny", ""),
			r5Consent("bench-permit", patientPermit, "permit", ""),
			r5Consent("bench-permit-not-r", patientPermitNotR, "permit",
				`[{"securityLabel":[{"system":"`+confidentiality+`","code":"R"}]}]`),
		},
	}
}

func clinicianReadScenario() *Scenario {
	return &Scenario{
		Name:        "clinician-read",
		Description: "one request: a clinician reads an Observation of a patient without consent in their organisation (ALLOW)",
		Requests: []*chaperonev1.CheckRequest{
			req("Practitioner/p1", "practitioner", []string{"clinician"}, "Organization/o1", "read", "Observation",
				patientNone, "Organization/o1", "TREAT", "N"),
		},
	}
}

// gatewayScenario is the reference scenario's subjects asking what a
// gateway asks: request-phase CheckRequests (context.phase "request"),
// each the mapping of a FHIR REST request, so the four doors (Check,
// AuthZEN, ext_authz and forward-auth) are asked the same question.
func gatewayScenario() *Scenario {
	const (
		dr    = "Practitioner/p1"
		o1    = "Organization/o1"
		pract = "practitioner"
	)
	// gw builds a request-phase request; patient only where the URL
	// names it (a compartment search, a Patient read).
	gw := func(subject, kind, role, org, action, rtype, id, patient, purpose string) *chaperonev1.CheckRequest {
		return &chaperonev1.CheckRequest{
			Subject:      &chaperonev1.Subject{Id: subject, Kind: kind, Roles: []string{role}, Organization: org, ClientId: "portal"},
			Action:       action,
			Resource:     &chaperonev1.Resource{Type: rtype, Id: id, Patient: patient},
			PurposeOfUse: purpose,
			Context:      &chaperonev1.Context{Phase: "request"},
		}
	}
	return &Scenario{
		Name: "gateway",
		Description: "12 request-phase requests as a gateway maps them (GET /fhir/Patient/52/Observation, GET /fhir/Observation/o1, …): " +
			"clinician, nurse, patient, support and billing; searches in a patient's compartment, reads and a create by id; " +
			"break-glass purpose, a patient in another's compartment",
		Requests: []*chaperonev1.CheckRequest{
			gw(dr, pract, "clinician", o1, "search", "Observation", "", patientNone, "TREAT"),
			gw(dr, pract, "clinician", o1, "read", "Observation", "o1", "", "TREAT"),
			gw(dr, pract, "clinician", o1, "search", "Condition", "", patientPermit, "TREAT"),
			gw("Practitioner/n1", pract, "nurse", o1, "read", "MedicationRequest", "m1", "", "TREAT"),
			gw(dr, pract, "clinician", o1, "search", "AllergyIntolerance", "", patientDeny, "ETREAT"),
			gw(dr, pract, "clinician", o1, "create", "Observation", "", "", "TREAT"),
			gw(patientNone, "patient", "patient", "", "search", "Observation", "", patientNone, "PATRQT"),
			gw(patientNone, "patient", "patient", "", "search", "Observation", "", patientPermit, "PATRQT"),
			gw("Practitioner/s1", pract, "support", o1, "read", "Patient", "52", patientNone, "HOPERAT"),
			gw("Practitioner/s1", pract, "support", o1, "search", "Observation", "", patientNone, "HOPERAT"),
			gw("Practitioner/b1", pract, "billing", o1, "read", "Encounter", "e1", "", "HPAYMT"),
			gw(dr, pract, "clinician", o1, "search", "Observation", "", patientNone, "HPAYMT"),
		},
		Consents: referenceScenario().Consents,
	}
}

// ReadRequests reads CheckRequests in proto3 JSON, one per line (blank
// lines are skipped).
func ReadRequests(r io.Reader) ([]*chaperonev1.CheckRequest, error) {
	var out []*chaperonev1.CheckRequest
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		m := &chaperonev1.CheckRequest{}
		if err := protojson.Unmarshal(b, m); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no requests")
	}
	return out, nil
}

// SeedConsents stores consents through the ConsentService Put of the
// server at addr.
func SeedConsents(ctx context.Context, addr string, consents [][]byte) error {
	client := chaperonev1connect.NewConsentServiceClient(http.DefaultClient, BaseURL(addr))
	for i, c := range consents {
		var m map[string]any
		if err := json.Unmarshal(c, &m); err != nil {
			return fmt.Errorf("consent %d: %w", i, err)
		}
		s, err := structpb.NewStruct(m)
		if err != nil {
			return fmt.Errorf("consent %d: %w", i, err)
		}
		if _, err := client.Put(ctx, connect.NewRequest(&chaperonev1.ConsentServicePutRequest{Consent: s})); err != nil {
			return fmt.Errorf("put consent %v: %w", m["id"], err)
		}
	}
	return nil
}
