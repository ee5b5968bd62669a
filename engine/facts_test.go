package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestAccessFacts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	store := access.NewMemory()
	g, err := access.NewGrant("Practitioner/p1", "Patient/52", "unconscious patient, chart needed now", "Practitioner/p1", time.Hour, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	for _, a := range []access.Agreement{
		{ClientID: "good-app", Vendor: "Acme", BAASigned: true, Purposes: []string{"TREAT"}, ResourceTypes: []string{"Observation"}},
		{ClientID: "expired-app", Vendor: "Old", BAASigned: true, BAAExpires: now.Add(-time.Hour), Purposes: []string{"*"}, ResourceTypes: []string{"*"}},
		{ClientID: "unsigned-app", Vendor: "New", Purposes: []string{"*"}, ResourceTypes: []string{"*"}},
		{ClientID: "revoked-app", Vendor: "Gone", BAASigned: true, Purposes: []string{"*"}, ResourceTypes: []string{"*"}, Revoked: true},
	} {
		if _, err := store.PutAgreement(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	b := loadTestBundle(t, "testdata/facts")
	tests := []struct {
		name  string
		edit  func(r *chaperonev1.CheckRequest)
		allow bool
		code  string
	}{
		{name: "grant allows over consent deny", edit: func(r *chaperonev1.CheckRequest) { r.Subject.Roles = []string{"nurse"} }, allow: true, code: "POLICY_PERMIT"},
		{name: "grant is for another patient", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles = []string{"nurse"}
			r.Resource.Patient = "Patient/53"
		}, code: "CONSENT_DENY"},
		{name: "grant has expired", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles = []string{"nurse"}
			r.Context.Time.Seconds += 7200
		}, code: "CONSENT_DENY"},
		{name: "agreement covers", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.ClientId, r.PurposeOfUse = []string{"app"}, "good-app", "TREAT"
			r.Resource.Patient = ""
		}, allow: true, code: "POLICY_PERMIT"},
		{name: "agreement does not cover the purpose", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.ClientId, r.PurposeOfUse = []string{"app"}, "good-app", "HMARKT"
			r.Resource.Patient = ""
		}, code: "VENDOR_NOT_AUTHORIZED"},
		{name: "agreement expired", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.ClientId = []string{"app"}, "expired-app"
			r.Resource.Patient = ""
		}, code: "VENDOR_NOT_AUTHORIZED"},
		{name: "agreement unsigned", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.ClientId = []string{"app"}, "unsigned-app"
			r.Resource.Patient = ""
		}, code: "VENDOR_NOT_AUTHORIZED"},
		{name: "agreement revoked", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.ClientId = []string{"app"}, "revoked-app"
			r.Resource.Patient = ""
		}, code: "VENDOR_NOT_AUTHORIZED"},
		{name: "no agreement", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.ClientId = []string{"app"}, "unknown-app"
			r.Resource.Patient = ""
		}, code: "VENDOR_NOT_AUTHORIZED"},
		{name: "scopes insufficient", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.Scopes = []string{"nurse"}, []string{"user/Condition.rs"}
		}, code: "SCOPE_INSUFFICIENT"},
		{name: "scopes sufficient", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles, r.Subject.Scopes = []string{"nurse"}, []string{"user/Observation.rs"}
		}, allow: true, code: "POLICY_PERMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := engine.New(consentDenies, engine.WithGrants(store), engine.WithAgreements(store), engine.WithRequestTime())
			e.Activate(b)
			req := request(nil, "read", "Observation", "TREAT")
			tt.edit(req)
			resp := e.Check(ctx, req)
			if got := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW; got != tt.allow || resp.GetReasons()[0].GetCode() != tt.code {
				t.Fatalf("got %v %v, want allow=%v %s", resp.GetDecision(), resp.GetReasons(), tt.allow, tt.code)
			}
		})
	}
}
