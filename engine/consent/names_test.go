package consent_test

import (
	"fmt"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestNamesSubject: a permit names the subject only when a deciding
// provision (or an ancestor) has the subject itself as a recipient actor.
func TestNamesSubject(t *testing.T) {
	t.Parallel()
	const base = `{"resourceType": "Consent", "id": "c", "status": "active",
	  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
	  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
	  "patient": {"reference": "Patient/52"}, "dateTime": "2023-01-01", "provision": %s}`
	const rp1 = `{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "RelatedPerson/rp1"}}`
	withIdent := func(r *chaperonev1.CheckRequest) {
		r.Subject.Identifiers = []*chaperonev1.Identifier{{System: "urn:example:family", Value: "rp-77"}}
	}
	withOrgIdent := func(r *chaperonev1.CheckRequest) {
		r.Subject.OrganizationIdentifiers = []*chaperonev1.Identifier{{System: "urn:example:family", Value: "rp-77"}}
	}
	tests := []struct {
		name      string
		provision string
		opts      []reqOpt
		decision  consent.Decision
		named     bool
		recipient bool // NamesRecipient; implied by named
	}{
		{name: "general permit", provision: `{"type": "permit"}`, decision: consent.Permit},
		{name: "root permit to the subject", provision: `{"type": "permit", "actor": [` + rp1 + `]}`, decision: consent.Permit, named: true},
		{name: "root permit to another person", provision: `{"type": "permit", "actor": [` + rp1 + `]}`,
			opts: []reqOpt{subject("RelatedPerson/rp2")}, decision: consent.NoConsent},
		{name: "nested permit to the subject under a deny", provision: `{"type": "deny", "provision": [{"type": "permit", "actor": [` + rp1 + `]}]}`,
			decision: consent.Permit, named: true},
		{name: "nested permit under a root that names the subject", provision: `{"type": "permit", "actor": [` + rp1 + `], "provision": [{"type": "permit", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}]}`,
			decision: consent.Permit, named: true},
		{name: "permit to the subject's organization", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "Organization/54"}}]}`,
			opts: []reqOpt{subjOrg("Organization/54")}, decision: consent.Permit, recipient: true},
		{name: "permit to another organization", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "Organization/54"}}]}`,
			opts: []reqOpt{subjOrg("Organization/55")}, decision: consent.NoConsent},
		{name: "permit to any recipient", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}}]}`,
			decision: consent.Permit},
		{name: "permit to the subject's identifier", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"identifier": {"system": "urn:example:family", "value": "rp-77"}}}]}`,
			opts: []reqOpt{subject("RelatedPerson/x"), withIdent}, decision: consent.Permit, named: true},
		{name: "an organization identifier is not the subject", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"identifier": {"system": "urn:example:family", "value": "rp-77"}}}]}`,
			opts: []reqOpt{subject("RelatedPerson/x"), withOrgIdent}, decision: consent.Permit, recipient: true},
		{name: "an identifier in another system names no one", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"identifier": {"system": "urn:example:other", "value": "rp-77"}}}]}`,
			opts: []reqOpt{subject("RelatedPerson/x"), withIdent}, decision: consent.NoConsent},
		{name: "an identifier without system names no one with a system", provision: `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"identifier": {"value": "rp-77"}}}]}`,
			opts: []reqOpt{subject("RelatedPerson/x"), withIdent, withOrgIdent}, decision: consent.NoConsent},
		{name: "a deny naming the subject names nothing", provision: `{"type": "deny", "actor": [` + rp1 + `]}`, decision: consent.Deny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := fhirconsent.Parse([]byte(sprintf(base, tt.provision)))
			if err != nil {
				t.Fatal(err)
			}
			opts := append([]reqOpt{subject("RelatedPerson/rp1")}, tt.opts...)
			q := consent.NewQuery(rq(opts...), day("2024-01-01"))
			res := consent.Evaluate(&q, []*fhirconsent.Consent{c}, consent.MostRecent)
			wantRecipient := tt.named || tt.recipient
			if res.Decision != tt.decision || res.NamesSubject != tt.named || res.NamesRecipient != wantRecipient {
				t.Fatalf("decision %v namesSubject %v namesRecipient %v, want %v %v %v",
					res.Decision, res.NamesSubject, res.NamesRecipient, tt.decision, tt.named, wantRecipient)
			}
		})
	}
}

func sprintf(format, arg string) string { return fmt.Sprintf(format, arg) }

// TestNewerPermitKeepsDelegation: permits do not contradict one another, so
// a newer general permit leaves an older delegation in force under
// most-recent, and a deny newer than both revokes it.
func TestNewerPermitKeepsDelegation(t *testing.T) {
	t.Parallel()
	const consentJSON = `{"resourceType": "Consent", "id": %q, "status": "active",
	  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
	  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
	  "patient": {"reference": "Patient/52"}, "dateTime": %q, "provision": %s}`
	parse := func(id, date, prov string) *fhirconsent.Consent {
		c, err := fhirconsent.Parse([]byte(fmt.Sprintf(consentJSON, id, date, prov)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	delegation := parse("delegation", "2023-01-01", `{"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "RelatedPerson/rp1"}}]}`)
	general := parse("general", "2023-06-01", `{"type": "permit"}`)
	optOut := parse("opt-out", "2023-09-01", `{"type": "deny"}`)
	for _, tc := range []struct {
		name     string
		consents []*fhirconsent.Consent
		want     consent.Decision
		named    bool
	}{
		{"delegation alone", []*fhirconsent.Consent{delegation}, consent.Permit, true},
		{"newer general permit", []*fhirconsent.Consent{general, delegation}, consent.Permit, true},
		{"newer opt-out revokes both", []*fhirconsent.Consent{delegation, optOut, general}, consent.Deny, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := consent.NewQuery(rq(subject("RelatedPerson/rp1")), day("2024-01-01"))
			res := consent.Evaluate(&q, tc.consents, consent.MostRecent)
			if res.Decision != tc.want || res.NamesSubject != tc.named {
				t.Fatalf("decision %v namesSubject %v, want %v %v", res.Decision, res.NamesSubject, tc.want, tc.named)
			}
		})
	}
}

// TestRestrictsRecipient: a deny restricts the recipient only when a
// deciding deny provision (or an ancestor) names the subject or its
// organization; a general opt-out names no one.
func TestRestrictsRecipient(t *testing.T) {
	t.Parallel()
	const base = `{"resourceType": "Consent", "id": "c", "status": "active",
	  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
	  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
	  "patient": {"reference": "Patient/52"}, "dateTime": "2023-01-01", "provision": %s}`
	const org = `{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "Organization/o1"}}`
	for _, tc := range []struct {
		name, provision string
		want            bool
	}{
		{"general opt-out", `{"type": "deny"}`, false},
		{"deny to the subject's organization", `{"type": "deny", "actor": [` + org + `]}`, true},
		{"nested deny under a permit to the organization", `{"type": "permit", "actor": [` + org + `], "provision": [{"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := fhirconsent.Parse([]byte(sprintf(base, tc.provision)))
			if err != nil {
				t.Fatal(err)
			}
			q := consent.NewQuery(rq(subject("Practitioner/p1"), subjOrg("Organization/o1")), day("2024-01-01"))
			res := consent.Evaluate(&q, []*fhirconsent.Consent{c}, consent.MostRecent)
			if res.Decision != consent.Deny || res.RestrictsRecipient != tc.want || res.NamesRecipient {
				t.Fatalf("decision %v restricts %v names %v, want DENY %v false", res.Decision, res.RestrictsRecipient, res.NamesRecipient, tc.want)
			}
		})
	}
}
