package engine

import (
	"testing"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestAdmit(t *testing.T) {
	t.Parallel()
	b := &Bundle{roles: map[string]bool{"clinician": true, "patient": true, "related-person": true}}
	ls, err := newLabelSet(map[string][]string{"http://terminology.hl7.org/CodeSystem/v3-ActCode": {"SUD"}})
	if err != nil {
		t.Fatal(err)
	}
	b.labels = ls
	req := func(id, kind, org string, roles ...string) *chaperonev1.CheckRequest {
		return &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{Id: id, Kind: kind, Organization: org, Roles: roles},
			Resource: &chaperonev1.Resource{Type: "Observation"}}
	}
	withLabel := func(r *chaperonev1.CheckRequest, system, code string) *chaperonev1.CheckRequest {
		r.Resource.SecurityLabels = append(r.Resource.SecurityLabels, &chaperonev1.Coding{System: system, Code: code})
		return r
	}
	for _, tc := range []struct {
		name string
		req  *chaperonev1.CheckRequest
		want string // "" admitted
	}{
		{"practitioner", req("Practitioner/p1", "practitioner", "Organization/o1", "clinician"), ""},
		{"practitioner role", req("PractitionerRole/r1", "practitioner", "Organization/o1", "clinician"), ""},
		{"patient", req("Patient/51", "patient", "", "patient"), ""},
		{"related person", req("RelatedPerson/rp1", "related-person", "", "related-person"), ""},
		{"service as an organization", req("Organization/o1", "service", "Organization/o1", "clinician"), ""},
		{"practitioner with a patient id", req("Patient/51", "practitioner", "Organization/o1", "clinician"), "KIND_ID_MISMATCH"},
		{"patient with a practitioner id", req("Practitioner/p1", "patient", "", "patient"), "KIND_ID_MISMATCH"},
		{"device with a patient id", req("Patient/51", "device", "Organization/o1"), "KIND_ID_MISMATCH"},
		{"service with a patient id", req("Patient/51", "service", "Organization/o1"), "KIND_ID_MISMATCH"},
		{"related person with a patient id", req("Patient/51", "related-person", "", "related-person"), "KIND_ID_MISMATCH"},
		{"patient claiming a workforce role", req("Patient/51", "patient", "", "clinician"), "ROLE_KIND_MISMATCH"},
		{"practitioner claiming the patient role", req("Practitioner/p1", "practitioner", "Organization/o1", "patient"), "ROLE_KIND_MISMATCH"},
		{"no kind with a role", req("Practitioner/p1", "", "Organization/o1", "clinician"), "ROLE_KIND_MISMATCH"},
		{"unknown role", req("Practitioner/p1", "practitioner", "Organization/o1", "Clinician"), "UNKNOWN_ROLE"},
		{"workforce without organization", req("Practitioner/p1", "practitioner", "", "clinician"), "ORGANIZATION_REQUIRED"},
		{"known label", withLabel(req("Practitioner/p1", "practitioner", "Organization/o1"), "http://terminology.hl7.org/CodeSystem/v3-ActCode", "SUD"), ""},
		{"known label by OID", withLabel(req("Practitioner/p1", "practitioner", "Organization/o1"), "urn:oid:2.16.840.1.113883.5.4", "SUD"), ""},
		{"known label without system", withLabel(req("Practitioner/p1", "practitioner", "Organization/o1"), "", "SUD"), ""},
		{"label in another case", withLabel(req("Practitioner/p1", "practitioner", "Organization/o1"), "", "sud"), "UNKNOWN_SECURITY_LABEL"},
		{"label of another system", withLabel(req("Practitioner/p1", "practitioner", "Organization/o1"), "http://example.org", "SUD"), "UNKNOWN_SECURITY_LABEL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ""
			if r := b.admit(tc.req); r != nil {
				got = r.GetCode()
			}
			if got != tc.want {
				t.Fatalf("admit = %q, want %q", got, tc.want)
			}
		})
	}
}
