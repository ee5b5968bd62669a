package server_test

import (
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
)

// BenchmarkAuditSearch is what a Decisions page costs: AuditService reads
// the whole log on every call (a search by patient among n decisions of
// 100 patients).
func BenchmarkAuditSearch(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			svc := benchAuditLog(b, n)
			ctx := context.Background()
			req := connect.NewRequest(&chaperonev1.AuditServiceSearchRequest{Patient: "Patient/7"})
			b.ReportAllocs()
			for b.Loop() {
				resp, err := svc.Search(ctx, req)
				if err != nil || len(resp.Msg.GetRecords()) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuditVerify is the chain status of the Decisions page: every
// record hashed and linked.
func BenchmarkAuditVerify(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			svc := benchAuditLog(b, n)
			ctx := context.Background()
			req := connect.NewRequest(&chaperonev1.AuditServiceVerifyRequest{})
			b.ReportAllocs()
			for b.Loop() {
				resp, err := svc.Verify(ctx, req)
				if err != nil || !resp.Msg.GetIntact() {
					b.Fatal(err, resp.Msg.GetError())
				}
			}
		})
	}
}

// benchAuditLog writes n decisions about 100 patients and returns an
// AuditService reading them.
func benchAuditLog(b *testing.B, n int) *server.AuditService {
	b.Helper()
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	l := audit.New(sink, audit.WithQueueSize(4096))
	ctx := context.Background()
	for i := range n {
		req := checkRequest(b)
		req.Resource.Patient = fmt.Sprintf("Patient/%d", i%100)
		resp := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW, DecisionId: fmt.Sprint(i), BundleRevision: "r1"}
		if err := l.Record(ctx, "bench", req, resp); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return server.NewAuditService(func(context.Context) iter.Seq2[audit.Entry, error] { return audit.ReadFiles(path) }, nil)
}
