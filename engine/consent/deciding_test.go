package consent_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// TestDecidingConsent: the result names the consent that decided (the most
// recent of those that stand), its deciding provision, and the purposes of
// that provision and its ancestors; nothing when no consent decides.
func TestDecidingConsent(t *testing.T) {
	t.Parallel()
	const consentJSON = `{"resourceType": "Consent", "id": %q, "status": "active",
	  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": %q}]},
	  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
	  "patient": {"reference": "Patient/52"}, "dateTime": %q, "provision": %s}`
	parse := func(id, scope, date, prov string) *fhirconsent.Consent {
		c, err := fhirconsent.Parse([]byte(fmt.Sprintf(consentJSON, id, scope, date, prov)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const reason = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	research := parse("research", "research", "2023-01-01",
		`{"type": "deny", "provision": [{"type": "permit", "purpose": [{"system": "`+reason+`", "code": "HRESCH"}],
		  "provision": [{"type": "permit", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}], "purpose": [{"system": "`+reason+`", "code": "CLINTRCH"}]}]}]}`)
	privacy := parse("privacy", "patient-privacy", "2023-06-01", `{"type": "permit"}`)
	optOut := parse("opt-out", "patient-privacy", "2023-09-01", `{"type": "deny", "purpose": [{"system": "`+reason+`", "code": "HMARKT"}]}`)
	tests := []struct {
		name      string
		consents  []*fhirconsent.Consent
		opts      []reqOpt
		decision  consent.Decision
		id, path  string
		scope     fhirconsent.Scope
		purposes  []string
		noneFound bool
	}{
		{name: "research consent, nested provision", consents: []*fhirconsent.Consent{research}, opts: []reqOpt{purpose("HRESCH")},
			decision: consent.Permit, id: "research", path: "provision.provision[0]", scope: fhirconsent.ScopeResearch, purposes: []string{"HRESCH"}},
		{name: "research consent, deepest provision with the ancestors' purposes", consents: []*fhirconsent.Consent{research}, opts: []reqOpt{purpose("CLINTRCH")},
			decision: consent.Permit, id: "research", path: "provision.provision[0].provision[0]", scope: fhirconsent.ScopeResearch, purposes: []string{"HRESCH", "CLINTRCH"}},
		{name: "a newer privacy permit decides a research request", consents: []*fhirconsent.Consent{research, privacy}, opts: []reqOpt{purpose("HRESCH")},
			decision: consent.Permit, id: "privacy", path: "provision", scope: fhirconsent.ScopePrivacy},
		{name: "research consent does not apply to treatment", consents: []*fhirconsent.Consent{research, privacy},
			decision: consent.Permit, id: "privacy", path: "provision", scope: fhirconsent.ScopePrivacy},
		{name: "deny decides", consents: []*fhirconsent.Consent{privacy, optOut}, opts: []reqOpt{purpose("HMARKT")},
			decision: consent.Deny, id: "opt-out", path: "provision", scope: fhirconsent.ScopePrivacy, purposes: []string{"HMARKT"}},
		{name: "no consent applies", consents: []*fhirconsent.Consent{research}, decision: consent.NoConsent, noneFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := consent.NewQuery(rq(tt.opts...), day("2024-01-01"))
			res := consent.Evaluate(&q, tt.consents, consent.MostRecent)
			if res.Decision != tt.decision {
				t.Fatalf("decision %v, want %v", res.Decision, tt.decision)
			}
			if tt.noneFound {
				if res.Deciding != nil || res.DecidingProvision != nil || res.DecidingPurposes() != nil {
					t.Fatalf("deciding %v %v %v, want none", res.Deciding, res.DecidingProvision, res.DecidingPurposes())
				}
				return
			}
			if res.Deciding == nil || res.DecidingProvision == nil {
				t.Fatalf("no deciding consent or provision")
			}
			if res.Deciding.ID != tt.id || res.DecidingProvision.Path != tt.path || res.Deciding.Scope != tt.scope {
				t.Errorf("deciding %s %s %v, want %s %s %v", res.Deciding.ID, res.DecidingProvision.Path, res.Deciding.Scope, tt.id, tt.path, tt.scope)
			}
			if got := res.DecidingPurposes(); !slices.Equal(got, tt.purposes) {
				t.Errorf("purposes %q, want %q", got, tt.purposes)
			}
			if want := []fhirconsent.Coding{{System: "http://loinc.org", Code: "59284-0"}}; !slices.Equal(res.Deciding.Categories, want) {
				t.Errorf("categories %v, want %v", res.Deciding.Categories, want)
			}
		})
	}
}
