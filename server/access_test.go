package server_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

type accessClients struct {
	access     chaperonev1connect.AccessServiceClient
	agreements chaperonev1connect.AgreementServiceClient
	decisions  chaperonev1connect.DecisionServiceClient
}

// startAccessServer serves the reference bundle with in-memory consent and
// access stores, AccessService and AgreementService mounted, through the
// validating server.
func startAccessServer(t *testing.T) accessClients {
	t.Helper()
	mem := access.NewMemory()
	eng := engine.New(engine.StoreConsents(consentstore.NewMemory()), engine.WithGrants(mem), engine.WithAgreements(mem))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(eng, v, server.WithAccessService(server.NewAccessService(mem)),
		server.WithAgreementService(server.NewAgreementService(mem))).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	url := "http://" + ln.Addr().String()
	return accessClients{
		access:     chaperonev1connect.NewAccessServiceClient(http.DefaultClient, url),
		agreements: chaperonev1connect.NewAgreementServiceClient(http.DefaultClient, url),
		decisions:  chaperonev1connect.NewDecisionServiceClient(http.DefaultClient, url),
	}
}

func TestAccessServiceValidation(t *testing.T) {
	t.Parallel()
	c := startAccessServer(t)
	ok := func() *chaperonev1.AccessServiceGrantBreakGlassRequest {
		return &chaperonev1.AccessServiceGrantBreakGlassRequest{Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room"}
	}
	cases := []struct {
		name  string
		edit  func(r *chaperonev1.AccessServiceGrantBreakGlassRequest)
		field string
	}{
		{"short reason", func(r *chaperonev1.AccessServiceGrantBreakGlassRequest) { r.Reason = "because" }, "reason"},
		{"no subject", func(r *chaperonev1.AccessServiceGrantBreakGlassRequest) { r.Subject = "" }, "subject"},
		{"no patient", func(r *chaperonev1.AccessServiceGrantBreakGlassRequest) { r.Patient = "" }, "patient"},
		{"ttl over 24h", func(r *chaperonev1.AccessServiceGrantBreakGlassRequest) { r.Ttl = durationpb.New(25 * time.Hour) }, "ttl"},
		{"zero ttl", func(r *chaperonev1.AccessServiceGrantBreakGlassRequest) { r.Ttl = durationpb.New(0) }, "ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ok()
			tc.edit(r)
			_, err := c.access.GrantBreakGlass(context.Background(), connect.NewRequest(r))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("err = %v, want invalid_argument naming %s", err, tc.field)
			}
		})
	}
	_, err := c.access.ListBreakGlass(context.Background(), connect.NewRequest(&chaperonev1.AccessServiceListBreakGlassRequest{}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("list without subject or patient: %v", err)
	}
	_, err = c.agreements.Put(context.Background(), connect.NewRequest(&chaperonev1.AgreementServicePutRequest{Agreement: &chaperonev1.Agreement{ClientId: "x"}}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "vendor") {
		t.Errorf("agreement without vendor: %v", err)
	}
}

func TestAccessServiceBreakGlass(t *testing.T) {
	t.Parallel()
	c := startAccessServer(t)
	ctx := context.Background()
	resp, err := c.access.GrantBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
		Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room", GrantedBy: "Practitioner/1"}))
	if err != nil {
		t.Fatal(err)
	}
	g := resp.Msg.GetGrant()
	if ttl := g.GetExpireTime().AsTime().Sub(g.GetCreateTime().AsTime()); g.GetId() == "" || ttl != access.DefaultGrantTTL || g.GetRevoked() {
		t.Fatalf("grant %v (ttl %s)", g, ttl)
	}
	list, err := c.access.ListBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceListBreakGlassRequest{Patient: "Patient/52"}))
	if err != nil || len(list.Msg.GetGrants()) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	rev, err := c.access.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{Id: g.GetId()}))
	if err != nil || !rev.Msg.GetGrant().GetRevoked() {
		t.Fatalf("revoke: %v %v", rev, err)
	}
	_, err = c.access.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{Id: "bg-none"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("revoke unknown: %v", err)
	}
}

// TestAgreementVisibleToNextCheck: offboarding is immediate; a revoked or
// expired agreement is seen by the very next Check.
func TestAgreementVisibleToNextCheck(t *testing.T) {
	t.Parallel()
	c := startAccessServer(t)
	ctx := context.Background()
	check := func() *chaperonev1.CheckResponse {
		t.Helper()
		resp, err := c.decisions.Check(ctx, connect.NewRequest(&chaperonev1.CheckRequest{
			Subject:      &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1", ClientId: "acme-app"},
			Action:       "read",
			Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1"},
			PurposeOfUse: "TREAT",
		}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	hasCode := func(r *chaperonev1.CheckResponse, code string) bool {
		for _, reason := range r.GetReasons() {
			if reason.GetCode() == code {
				return true
			}
		}
		return false
	}
	put := func(expires time.Time) {
		t.Helper()
		_, err := c.agreements.Put(ctx, connect.NewRequest(&chaperonev1.AgreementServicePutRequest{Agreement: &chaperonev1.Agreement{
			ClientId: "acme-app", Vendor: "Acme", Tier: "business-associate", BaaSigned: true, BaaExpires: timestamppb.New(expires),
			Purposes: []string{"TREAT"}, ResourceTypes: []string{"Observation"}}}))
		if err != nil {
			t.Fatal(err)
		}
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY || !hasCode(r, "VENDOR_NOT_AUTHORIZED") {
		t.Fatalf("without agreement: %v", r)
	}
	put(time.Now().Add(24 * time.Hour))
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("with an active agreement: %v", r)
	}
	got, err := c.agreements.Revoke(ctx, connect.NewRequest(&chaperonev1.AgreementServiceRevokeRequest{ClientId: "acme-app"}))
	if err != nil || !got.Msg.GetAgreement().GetRevoked() {
		t.Fatalf("revoke: %v %v", got, err)
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY || !hasCode(r, "VENDOR_NOT_AUTHORIZED") {
		t.Errorf("after revocation: %v", r)
	}
	read, err := c.agreements.Get(ctx, connect.NewRequest(&chaperonev1.AgreementServiceGetRequest{ClientId: "acme-app"}))
	if err != nil || !read.Msg.GetAgreement().GetRevoked() || read.Msg.GetAgreement().GetVendor() != "Acme" {
		t.Errorf("revoked agreement readable: %v %v", read, err)
	}
	put(time.Now().Add(-time.Minute))
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY || !hasCode(r, "VENDOR_NOT_AUTHORIZED") {
		t.Errorf("with an expired agreement: %v", r)
	}
	_, err = c.agreements.Get(ctx, connect.NewRequest(&chaperonev1.AgreementServiceGetRequest{ClientId: "nobody"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("get unknown: %v", err)
	}
}
