package server_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

type relServer struct {
	base  string
	store *consentstore.MemoryRelationships
}

// startRelationshipServer serves the reference bundle with the treating
// relationships of an in-memory store, RelationshipService mounted, its
// changes on l, behind guard options when given.
func startRelationshipServer(t *testing.T, l *audit.Log, opts ...server.Option) relServer {
	t.Helper()
	rels := consentstore.NewMemoryRelationships(nil)
	eng := engine.New(engine.StoreConsents(consentstore.NewMemory()), engine.WithRelationships(rels))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	ro := []server.RelationshipOption{}
	if l != nil {
		ro = append(ro, server.WithRelationshipAudit(l))
		opts = append(opts, server.WithRecorder(l))
	}
	hs := server.New(eng, v, append(opts, server.WithRelationshipService(server.NewRelationshipService(rels, ro...)))...).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return relServer{base: "http://" + ln.Addr().String(), store: rels}
}

func okRelationship() *chaperonev1.Relationship {
	return &chaperonev1.Relationship{Kind: "careteam", Patient: "Patient/52", Practitioner: "Practitioner/p1",
		Organization: "Organization/o1", Source: "CareTeam/ct1",
		Start: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
}

func TestRelationshipServiceValidation(t *testing.T) {
	t.Parallel()
	s := startRelationshipServer(t, nil)
	c := chaperonev1connect.NewRelationshipServiceClient(http.DefaultClient, s.base)
	cases := []struct {
		name  string
		edit  func(r *chaperonev1.Relationship)
		field string
	}{
		{"unknown kind", func(r *chaperonev1.Relationship) { r.Kind = "CareTeam" }, "relationship.kind"},
		{"no patient", func(r *chaperonev1.Relationship) { r.Patient = "" }, "relationship.patient"},
		{"patient of another type", func(r *chaperonev1.Relationship) { r.Patient = "Group/52" }, "relationship.patient"},
		{"absolute patient url", func(r *chaperonev1.Relationship) { r.Patient = "https://fhir.example/Patient/52" }, "relationship.patient"},
		{"no practitioner", func(r *chaperonev1.Relationship) { r.Practitioner = "" }, "relationship.practitioner"},
		{"practitioner of another type", func(r *chaperonev1.Relationship) { r.Practitioner = "RelatedPerson/rp1" }, "relationship.practitioner"},
		{"organization without type", func(r *chaperonev1.Relationship) { r.Organization = "o1" }, "relationship.organization"},
		{"source of another type", func(r *chaperonev1.Relationship) { r.Source = "Consent/c1" }, "relationship.source"},
		{"bad id", func(r *chaperonev1.Relationship) { r.Id = "a b" }, "relationship.id"},
		{"end before start", func(r *chaperonev1.Relationship) {
			r.End = timestamppb.New(r.GetStart().AsTime().Add(-time.Hour))
		}, "relationship"},
		{"end equal to start", func(r *chaperonev1.Relationship) { r.End = r.GetStart() }, "relationship"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := okRelationship()
			tc.edit(r)
			_, err := c.Put(context.Background(), connect.NewRequest(&chaperonev1.RelationshipServicePutRequest{Relationship: r}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("err = %v, want invalid_argument naming %s", err, tc.field)
			}
		})
	}
	for _, req := range []*chaperonev1.RelationshipServiceListRequest{{}, {Patient: "Patient/52", Practitioner: "Practitioner/p1"}, {Patient: "52"}} {
		if _, err := c.List(context.Background(), connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("list %v: %v, want invalid_argument", req, err)
		}
	}
	if _, err := c.Put(context.Background(), connect.NewRequest(&chaperonev1.RelationshipServicePutRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(err.Error(), "relationship") {
		t.Errorf("put without a relationship: %v", err)
	}
	if rs, _ := s.store.PatientRelationships(context.Background(), "Patient/52"); len(rs) != 0 {
		t.Errorf("invalid puts stored %+v", rs)
	}
}

// TestRelationshipServiceChanges: put, list and delete work, and every put
// and delete is on the audit chain with the caller and what it changed.
func TestRelationshipServiceChanges(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	idp := newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, idp))
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "importer", Subjects: []string{"importer"}, Allow: []string{"chaperone.v1.RelationshipService"}},
		{Name: "gateway", Subjects: []string{"gateway"}, Allow: []string{"chaperone.v1.DecisionService"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := server.NewGuard(server.GuardConfig{JWT: newVerifier(t, js.url, time.Second), Authorizer: authz})
	if err != nil {
		t.Fatal(err)
	}
	s := startRelationshipServer(t, l, server.WithMiddleware(guard.Middleware), server.WithHandlerOptions(guard.HandlerOptions()...))
	client := func(sub string) chaperonev1connect.RelationshipServiceClient {
		return chaperonev1connect.NewRelationshipServiceClient(&http.Client{Transport: bearer(idp.sign(t, claims{sub: sub})), Timeout: 10 * time.Second}, s.base)
	}
	importer, gateway := client("importer"), client("gateway")
	ctx := context.Background()

	if _, err := gateway.Put(ctx, connect.NewRequest(&chaperonev1.RelationshipServicePutRequest{Relationship: okRelationship()})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a caller without the grant: %v, want permission_denied", err)
	}
	put, err := importer.Put(ctx, connect.NewRequest(&chaperonev1.RelationshipServicePutRequest{Relationship: okRelationship()}))
	if err != nil {
		t.Fatal(err)
	}
	rel := put.Msg.GetRelationship()
	if rel.GetId() != consentstore.RelationshipID("careteam", "CareTeam/ct1", "Patient/52", "Practitioner/p1") || rel.GetUpdateTime() == nil {
		t.Fatalf("stored %v", rel)
	}
	for _, req := range []*chaperonev1.RelationshipServiceListRequest{{Patient: "Patient/52"}, {Practitioner: "Practitioner/p1"}} {
		list, err := importer.List(ctx, connect.NewRequest(req))
		if err != nil || len(list.Msg.GetRelationships()) != 1 || list.Msg.GetRelationships()[0].GetId() != rel.GetId() {
			t.Fatalf("list %v: %v %v", req, list, err)
		}
	}
	if _, err := importer.Delete(ctx, connect.NewRequest(&chaperonev1.RelationshipServiceDeleteRequest{Id: rel.GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, err := importer.Delete(ctx, connect.NewRequest(&chaperonev1.RelationshipServiceDeleteRequest{Id: rel.GetId()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("second delete: %v, want not_found", err)
	}

	got := audit.Changes(readChain(t, l, path), "", audit.Window{})
	want := []struct {
		action  audit.ChangeAction
		outcome string
		patient string
	}{
		{audit.ChangeRelationshipPut, audit.OutcomeApplied, "Patient/52"},
		{audit.ChangeRelationshipDelete, audit.OutcomeApplied, "Patient/52"},
		{audit.ChangeRelationshipDelete, audit.OutcomeFailed, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		c := got[i]
		if c.Action != w.action || c.Outcome != w.outcome || c.Patient != w.patient || c.Caller != "importer" || c.RelationshipID != rel.GetId() {
			t.Errorf("change %d = %+v, want %+v by importer", i, c, w)
		}
	}
	if c := got[0]; c.Subject != "Practitioner/p1" || c.RelationshipKind != "careteam" || c.Source != "CareTeam/ct1" ||
		c.Organization != "Organization/o1" || c.Start == nil || c.End != nil {
		t.Errorf("put change = %+v", c)
	}
}

// TestRelationshipVisibleToNextCheck: a put opens, and a delete closes,
// sensitive data to the practitioner at the very next Check (reference
// bundle, treating-relationship.cedar).
func TestRelationshipVisibleToNextCheck(t *testing.T) {
	t.Parallel()
	s := startRelationshipServer(t, nil)
	rels := chaperonev1connect.NewRelationshipServiceClient(http.DefaultClient, s.base)
	decisions := chaperonev1connect.NewDecisionServiceClient(http.DefaultClient, s.base)
	ctx := context.Background()
	check := func() *chaperonev1.CheckResponse {
		t.Helper()
		resp, err := decisions.Check(ctx, connect.NewRequest(&chaperonev1.CheckRequest{
			Subject: &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1"},
			Action:  "read",
			Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1",
				SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "HIV"}}},
			PurposeOfUse: "TREAT",
			Context:      &chaperonev1.Context{NetworkZone: "clinic", DeviceTrust: "managed"},
		}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY || r.GetReasons()[0].GetCode() != "TREATING_RELATIONSHIP_REQUIRED" {
		t.Fatalf("without a relationship: %v", r)
	}
	put, err := rels.Put(ctx, connect.NewRequest(&chaperonev1.RelationshipServicePutRequest{Relationship: okRelationship()}))
	if err != nil {
		t.Fatal(err)
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("with a relationship: %v", r)
	}
	if _, err := rels.Delete(ctx, connect.NewRequest(&chaperonev1.RelationshipServiceDeleteRequest{Id: put.Msg.GetRelationship().GetId()})); err != nil {
		t.Fatal(err)
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY {
		t.Fatalf("after the delete: %v", r)
	}
}
