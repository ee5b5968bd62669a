package server_test

import (
	"bytes"
	"context"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// startAuditServer serves DecisionService recording to a durable file log
// and AuditService reading it back; it returns the base URL and the log's
// path.
func startAuditServer(t *testing.T) (string, string) {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithDurable(true))
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	svc := server.NewAuditService(func(context.Context) iter.Seq2[audit.Entry, error] { return audit.ReadFiles(path) }, l)
	ts := httptest.NewServer(server.New(eng, v, server.WithRecorder(l), server.WithAuditService(svc)))
	t.Cleanup(ts.Close)
	return ts.URL, path
}

func TestAuditService(t *testing.T) {
	t.Parallel()
	base, path := startAuditServer(t)
	ctx := context.Background()
	dc := chaperonev1connect.NewDecisionServiceClient(http.DefaultClient, base)
	ac := chaperonev1connect.NewAuditServiceClient(http.DefaultClient, base)
	resp, err := dc.Check(ctx, connect.NewRequest(checkRequest(t)))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.GetDecisionId()
	patient := checkRequest(t).GetResource().GetPatient()

	found, err := ac.Search(ctx, connect.NewRequest(&chaperonev1.AuditServiceSearchRequest{Patient: patient}))
	if err != nil || len(found.Msg.GetRecords()) != 1 || found.Msg.GetRecords()[0].GetDecisionId() != id {
		t.Fatalf("search by patient: %v %v", found, err)
	}
	if none, err := ac.Search(ctx, connect.NewRequest(&chaperonev1.AuditServiceSearchRequest{Patient: "Patient/nobody"})); err != nil || len(none.Msg.GetRecords()) != 0 {
		t.Fatalf("search for another patient: %v %v", none, err)
	}
	// Bad input is invalid_argument naming the field, never a search.
	for _, tc := range []struct {
		req   *chaperonev1.AuditServiceSearchRequest
		field string
	}{
		{&chaperonev1.AuditServiceSearchRequest{Patient: "patient/52"}, "patient"},
		{&chaperonev1.AuditServiceSearchRequest{Decision: "allow"}, "decision"},
		{&chaperonev1.AuditServiceSearchRequest{Limit: 5000}, "limit"},
	} {
		_, err := ac.Search(ctx, connect.NewRequest(tc.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("search %v: %v, want invalid_argument naming %s", tc.req, err, tc.field)
		}
	}
	if _, err := ac.GetRecord(ctx, connect.NewRequest(&chaperonev1.AuditServiceGetRecordRequest{DecisionId: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("get unknown: %v", err)
	}
	if _, err := ac.Review(ctx, connect.NewRequest(&chaperonev1.AuditServiceReviewRequest{DecisionId: "nope", Note: "x"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("review unknown: %v", err)
	}
	if _, err := ac.Review(ctx, connect.NewRequest(&chaperonev1.AuditServiceReviewRequest{DecisionId: id})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("review without note: %v", err)
	}
	if _, err := ac.Review(ctx, connect.NewRequest(&chaperonev1.AuditServiceReviewRequest{DecisionId: id, Note: "routine"})); err != nil {
		t.Fatal(err)
	}
	rec, err := ac.GetRecord(ctx, connect.NewRequest(&chaperonev1.AuditServiceGetRecordRequest{DecisionId: id}))
	if err != nil || len(rec.Msg.GetReviews()) != 1 || rec.Msg.GetReviews()[0].GetNote() != "routine" {
		t.Fatalf("record with review: %v %v", rec, err)
	}
	v, err := ac.Verify(ctx, connect.NewRequest(&chaperonev1.AuditServiceVerifyRequest{}))
	if err != nil || !v.Msg.GetIntact() || v.Msg.GetDecisions() != 1 || v.Msg.GetReviews() != 1 {
		t.Fatalf("verify: %v %v", v, err)
	}

	// An edited record: Verify says so, naming it.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(raw, []byte(`"ALLOW"`), []byte(`"DENY"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err = ac.Verify(ctx, connect.NewRequest(&chaperonev1.AuditServiceVerifyRequest{}))
	if err != nil || v.Msg.GetIntact() || !strings.Contains(v.Msg.GetError(), "edited") {
		t.Fatalf("verify an edited log: %v %v", v, err)
	}
}
