package authzen_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/authzen"
)

// A clinician reading an Observation of the own organization: ALLOW.
const (
	subjectP1  = `"subject": {"type": "practitioner", "id": "p1", "properties": {"roles": ["clinician"], "organization": "Organization/o1"}}`
	actionRead = `"action": {"name": "read"}`
	resourceO1 = `"resource": {"type": "Observation", "id": "o1", "properties": {"patient": "Patient/52", "organization": "Organization/o1"}}`
	contextOK  = `"context": {"purposeOfUse": "TREAT", "networkZone": "clinic", "deviceTrust": "managed"}`
	allowBody  = `{` + subjectP1 + `, ` + actionRead + `, ` + resourceO1 + `, ` + contextOK + `}`
)

// TestEvaluation: what AuthZEN's schema forbids is 400 with a plain
// message; everything else is a decision, those Chaperone cannot decide
// false with a reason naming the field, and no audit record.
func TestEvaluation(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	hourAgo := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	now := time.Now().UTC().Format(time.RFC3339)
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		decision    bool
		reasons     []string
		admin       string // in reason_admin, or in the 400 message
		audited     bool
	}{
		{name: "allow, bare subject id", body: allowBody, status: 200, decision: true, reasons: []string{"POLICY_PERMIT"}, audited: true},
		{name: "prefixed subject id", body: strings.Replace(allowBody, `"id": "p1"`, `"id": "Practitioner/p1"`, 1), status: 200, decision: true, reasons: []string{"POLICY_PERMIT"}, audited: true},
		{name: "charset in content type", body: allowBody, contentType: "application/json; charset=utf-8", status: 200, decision: true, reasons: []string{"POLICY_PERMIT"}, audited: true},
		{name: "unknown members at the top level and in entities are ignored",
			body:   `{"extra": 1, "subject": {"type": "practitioner", "id": "p1", "x": [1], "properties": {"roles": ["clinician"], "organization": "Organization/o1"}}, "action": {"name": "read", "y": {}}, ` + resourceO1 + `, ` + contextOK + `}`,
			status: 200, decision: true, reasons: []string{"POLICY_PERMIT"}, audited: true},
		{name: "context time now", body: strings.Replace(allowBody, `"purposeOfUse"`, `"time": "`+now+`", "purposeOfUse"`, 1), status: 200, decision: true, reasons: []string{"POLICY_PERMIT"}, audited: true},
		{name: "engine deny", body: strings.Replace(allowBody, `"organization": "Organization/o1"}}, "action"`, `"organization": "Organization/o2"}}, "action"`, 1), status: 200, decision: false, audited: true},

		// 200 false, not decided.
		{name: "no purpose", body: `{` + subjectP1 + `, ` + actionRead + `, ` + resourceO1 + `}`, status: 200, reasons: []string{"PURPOSE_REQUIRED"}, admin: "context.purposeOfUse"},
		{name: "empty purpose", body: strings.Replace(allowBody, `"TREAT"`, `""`, 1), status: 200, reasons: []string{"PURPOSE_REQUIRED"}, admin: "context.purposeOfUse"},
		{name: "misspelt subject property", body: strings.Replace(allowBody, `"roles"`, `"role"`, 1), status: 200, reasons: []string{"UNKNOWN_PROPERTY"}, admin: "subject.properties.role"},
		{name: "misspelt resource property", body: strings.Replace(allowBody, `"patient"`, `"Patient"`, 1), status: 200, reasons: []string{"UNKNOWN_PROPERTY"}, admin: "resource.properties.Patient"},
		{name: "misspelt context key", body: strings.Replace(allowBody, `"purposeOfUse"`, `"purposeofuse"`, 1), status: 200, reasons: []string{"UNKNOWN_PROPERTY"}, admin: "context.purposeofuse"},
		{name: "action property", body: strings.Replace(allowBody, `{"name": "read"}`, `{"name": "read", "properties": {"method": "GET"}}`, 1), status: 200, reasons: []string{"UNKNOWN_PROPERTY"}, admin: "action.properties.method"},
		{name: "unknown key in a coding", body: strings.Replace(allowBody, `"patient": "Patient/52"`, `"patient": "Patient/52", "securityLabels": [{"code": "N", "sytem": "x"}]`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "resource.properties.securityLabels"},
		{name: "roles of the wrong type", body: strings.Replace(allowBody, `["clinician"]`, `5`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "subject.properties.roles"},
		{name: "bare patient reference", body: strings.Replace(allowBody, `"Patient/52"`, `"52"`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "resource.properties.patient"},
		{name: "unknown subject type", body: strings.Replace(allowBody, `"practitioner"`, `"user"`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "subject.type"},
		{name: "unknown action", body: strings.Replace(allowBody, `"read"`, `"can_read"`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "action.name"},
		{name: "respelt device trust", body: strings.Replace(allowBody, `"managed"`, `"Managed"`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "context.deviceTrust"},
		{name: "time an hour ago", body: strings.Replace(allowBody, `"purposeOfUse"`, `"time": "`+hourAgo+`", "purposeOfUse"`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "context.time"},
		{name: "time not RFC 3339", body: strings.Replace(allowBody, `"purposeOfUse"`, `"time": "yesterday", "purposeOfUse"`, 1), status: 200, reasons: []string{"INVALID_REQUEST"}, admin: "context.time"},

		// 400.
		{name: "bad JSON", body: `{"subject": `, status: 400, admin: "invalid JSON"},
		{name: "not an object", body: `[]`, status: 400},
		{name: "duplicate member", body: `{"subject": {}, ` + allowBody[1:], status: 400},
		{name: "text content type", body: allowBody, contentType: "text/plain", status: 400, admin: "Content-Type"},
		{name: "no subject", body: `{` + actionRead + `, ` + resourceO1 + `, ` + contextOK + `}`, status: 400, admin: "subject: required"},
		{name: "null subject", body: `{"subject": null, ` + actionRead + `, ` + resourceO1 + `, ` + contextOK + `}`, status: 400, admin: "subject: required"},
		{name: "subject a string", body: `{"subject": "p1", ` + actionRead + `, ` + resourceO1 + `, ` + contextOK + `}`, status: 400, admin: "subject: wrong type"},
		{name: "no subject id", body: strings.Replace(allowBody, `"id": "p1", `, ``, 1), status: 400, admin: "subject.id: required"},
		{name: "subject id a number", body: strings.Replace(allowBody, `"id": "p1"`, `"id": 1`, 1), status: 400, admin: "subject.id: wrong type"},
		{name: "no subject type", body: strings.Replace(allowBody, `"type": "practitioner", `, ``, 1), status: 400, admin: "subject.type: required"},
		{name: "no action", body: `{` + subjectP1 + `, ` + resourceO1 + `, ` + contextOK + `}`, status: 400, admin: "action: required"},
		{name: "no action name", body: strings.Replace(allowBody, `{"name": "read"}`, `{}`, 1), status: 400, admin: "action.name: required"},
		{name: "no resource", body: `{` + subjectP1 + `, ` + actionRead + `, ` + contextOK + `}`, status: 400, admin: "resource: required"},
		{name: "no resource id", body: strings.Replace(allowBody, `"id": "o1", `, ``, 1), status: 400, admin: "resource.id: required"},
		{name: "properties an array", body: strings.Replace(allowBody, `"properties": {"roles": ["clinician"], "organization": "Organization/o1"}`, `"properties": []`, 1), status: 400, admin: "subject.properties: must be an object"},
		{name: "context a string", body: `{` + subjectP1 + `, ` + actionRead + `, ` + resourceO1 + `, "context": "TREAT"}`, status: 400, admin: "context: must be an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			before := len(srv.recorder.All())
			_ = before
			r := do(t, "POST", srv.url+authzen.EvaluationPath, ct, tc.body, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status != 200 {
				if !strings.Contains(string(r.body), tc.admin) {
					t.Fatalf("message %q does not say %q", r.body, tc.admin)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Fatalf("Content-Type %q, want a plain message", ct)
				}
				return
			}
			d := readDecision(t, r.json(t))
			if d.decision != tc.decision {
				t.Fatalf("decision %v, want %v: %s", d.decision, tc.decision, r.body)
			}
			if tc.reasons != nil && strings.Join(d.reasons, ",") != strings.Join(tc.reasons, ",") {
				t.Fatalf("reasons %v, want %v: %s", d.reasons, tc.reasons, r.body)
			}
			if !strings.Contains(d.admin, tc.admin) {
				t.Fatalf("reason_admin %q does not name %q", d.admin, tc.admin)
			}
			n := byDecisionID(srv.recorder)[d.decisionID]
			switch {
			case tc.audited && (d.decisionID == "" || n != 1):
				t.Fatalf("decision id %q has %d audit records, want 1", d.decisionID, n)
			case !tc.audited && d.decisionID != "":
				t.Fatalf("a request that was not decided has decision id %q", d.decisionID)
			}
		})
	}
}

// TestSubjectID: a bare id gets the prefix of its type; the audit record
// carries the mapped request and the caller.
func TestSubjectID(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	for _, tc := range []struct{ typ, id, want string }{
		{"practitioner", "p1", "Practitioner/p1"},
		{"patient", "52", "Patient/52"},
		{"related-person", "rp1", "RelatedPerson/rp1"},
		{"device", "d1", "Device/d1"},
		{"practitioner", "Practitioner/p9", "Practitioner/p9"},
	} {
		body := `{"subject": {"type": "` + tc.typ + `", "id": "` + tc.id + `"}, ` + actionRead + `, ` + resourceO1 + `, ` + contextOK + `}`
		d := readDecision(t, post(t, srv.url+authzen.EvaluationPath, body).json(t))
		var found bool
		for _, rec := range srv.recorder.All() {
			if rec.Resp.GetDecisionId() == d.decisionID {
				found = true
				if got := rec.Req.GetSubject().GetId(); got != tc.want {
					t.Errorf("%s %q: subject.id %q, want %q", tc.typ, tc.id, got, tc.want)
				}
				if rec.Caller != "unauthenticated" { // no guard in front
					t.Errorf("caller %q", rec.Caller)
				}
			}
		}
		if !found {
			t.Errorf("%s %q: no audit record", tc.typ, tc.id)
		}
	}
}

// TestObligations: Chaperone's obligations in the profile's types, and an
// ALLOW needing a type the client does not support is false
// OBLIGATION_UNSUPPORTED, audited as such.
func TestObligations(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	encounter := `{"subject": {"type": "practitioner", "id": "cc1", "properties": {"roles": ["care-coordinator"], "organization": "Organization/o1"}},
	  "action": {"name": "read"}, "resource": {"type": "Encounter", "id": "enc-1", "properties": {"patient": "Patient/51", "organization": "Organization/o1"}},
	  "context": {"purposeOfUse": "TREAT", "networkZone": "clinic", "deviceTrust": "managed"SUPPORTED}}`
	sensitive := `{"subject": {"type": "practitioner", "id": "p1", "properties": {"roles": ["clinician"], "organization": "Organization/o1"}},
	  "action": {"name": "read"}, "resource": {"type": "Observation", "id": "obs-1", "properties": {"patient": "Patient/52", "organization": "Organization/o1",
	    "securityLabels": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH"}]}},
	  "context": {"purposeOfUse": "TREAT", "networkZone": "clinic", "deviceTrust": "managed"SUPPORTED}}`
	tests := []struct {
		name      string
		body      string
		supported string
		decision  bool
		reasons   string
		want      map[string]string // type → properties as JSON-ish text
	}{
		{name: "mask", body: encounter, decision: true, reasons: "POLICY_PERMIT", want: map[string]string{"fhir-mask": "Encounter.diagnosis"}},
		{name: "mask supported", body: encounter, supported: `["fhir-mask"]`, decision: true, reasons: "POLICY_PERMIT", want: map[string]string{"fhir-mask": "Encounter.diagnosis"}},
		{name: "mask unsupported", body: encounter, supported: `["audit-tags"]`, reasons: "OBLIGATION_UNSUPPORTED", want: map[string]string{}},
		{name: "nothing supported", body: encounter, supported: `[]`, reasons: "OBLIGATION_UNSUPPORTED", want: map[string]string{}},
		{name: "audit tags", body: sensitive, decision: true, reasons: "POLICY_PERMIT", want: map[string]string{"audit-tags": "SENSITIVE"}},
		{name: "audit tags unsupported", body: sensitive, supported: `["fhir-mask", "per-entry-check"]`, reasons: "OBLIGATION_UNSUPPORTED", want: map[string]string{}},
		{name: "no obligation needed", body: strings.Replace(allowBody, `"managed"`, `"managed", "supported_obligations": []`, 1), decision: true, reasons: "POLICY_PERMIT", want: map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sup := ""
			if tc.supported != "" {
				sup = `, "supported_obligations": ` + tc.supported
			}
			r := post(t, srv.url+authzen.EvaluationPath, strings.Replace(tc.body, "SUPPORTED", sup, 1))
			d := readDecision(t, r.json(t))
			if d.decision != tc.decision || strings.Join(d.reasons, ",") != tc.reasons {
				t.Fatalf("decision %v %v, want %v %s: %s", d.decision, d.reasons, tc.decision, tc.reasons, r.body)
			}
			if len(d.obligations) != len(tc.want) {
				t.Fatalf("obligations %v, want %v", d.obligations, tc.want)
			}
			for typ, inProps := range tc.want {
				if !strings.Contains(string(r.body), `"type":"`+typ+`"`) || !strings.Contains(string(r.body), inProps) {
					t.Fatalf("no %s obligation with %s: %s", typ, inProps, r.body)
				}
			}
			var rec *record
			for _, x := range srv.recorder.All() {
				if x.Resp.GetDecisionId() == d.decisionID {
					rec = &x
				}
			}
			if rec == nil {
				t.Fatal("not audited")
			}
			if got := rec.Resp.GetDecision().String(); (got == "DECISION_ALLOW") != tc.decision {
				t.Fatalf("audited %s, answered %v", got, tc.decision)
			}
		})
	}
}

// TestPerEntryCheck: a search of a patient-compartment type without a
// patient needs a per-entry check, said as the per-entry-check obligation.
func TestPerEntryCheck(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	body := `{"subject": {"type": "practitioner", "id": "p1", "properties": {"roles": ["clinician"], "organization": "Organization/o1"}},
	  "action": {"name": "search"}, "resource": {"type": "Observation", "id": "", "properties": {"organization": "Organization/o1"}}, ` + contextOK + `}`
	r := post(t, srv.url+authzen.EvaluationPath, body)
	d := readDecision(t, r.json(t))
	if !d.decision {
		t.Fatalf("a type-level search by a clinician of the own organization is denied: %s", r.body)
	}
	if _, ok := d.obligations["per-entry-check"]; !ok {
		t.Fatalf("no per-entry-check obligation: %s", r.body)
	}
}
