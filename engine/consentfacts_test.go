package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestDecidingConsentFacts: policies in both languages see the consent that
// decided (id, provision path, scope, categories, purposes of the deciding
// provision), through the store-backed consent layer.
func TestDecidingConsentFacts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := consentstore.NewMemory()
	const reason = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	for _, raw := range []string{
		`{"resourceType": "Consent", "id": "research-52", "status": "active",
		  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
		  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentcategorycodes", "code": "research"}]}],
		  "patient": {"reference": "Patient/52"}, "dateTime": "2024-01-01",
		  "provision": {"type": "deny", "provision": [{"type": "permit", "purpose": [{"system": "` + reason + `", "code": "HRESCH"}]}]}}`,
		`{"resourceType": "Consent", "id": "privacy-53", "status": "active",
		  "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
		  "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
		  "patient": {"reference": "Patient/53"}, "dateTime": "2024-01-01",
		  "provision": {"type": "permit", "purpose": [{"system": "` + reason + `", "code": "HRESCH"}]}}`,
	} {
		c, err := fhirconsent.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	b := loadTestBundle(t, "testdata/consentfacts")
	tests := []struct {
		name    string
		patient string
		purpose string
		policy  string // "" for a DENY
	}{
		{name: "cedar: research consent", patient: "Patient/52", purpose: "HRESCH", policy: "cedar-research-consent"},
		{name: "rego: the deciding provision, its purposes (HRESCH covers CLINTRCH)", patient: "Patient/52", purpose: "CLINTRCH", policy: "rego-research-provision"},
		{name: "cedar: a privacy consent naming research is not a research consent", patient: "Patient/53", purpose: "HRESCH"},
		{name: "rego: another consent", patient: "Patient/53", purpose: "CLINTRCH"},
		{name: "no consent", patient: "Patient/54", purpose: "HRESCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := engine.New(engine.StoreConsents(store), engine.WithClock(func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }))
			e.Activate(b)
			req := request([]string{"analyst"}, "read", "Observation", tt.purpose)
			req.Resource.Patient = tt.patient
			req.Context = nil
			resp := e.Check(ctx, req)
			allow := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW
			if allow != (tt.policy != "") || (allow && resp.GetReasons()[0].GetPolicyId() != tt.policy) {
				t.Fatalf("got %v %v, want policy %q", resp.GetDecision(), resp.GetReasons(), tt.policy)
			}
		})
	}
}
