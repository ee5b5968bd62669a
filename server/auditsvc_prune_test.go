package server_test

import (
	"context"
	"iter"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
)

// TestAuditServiceVerifyPruned: after retention pruned the log's first
// segments, AuditService.Verify given the prune anchors reports it intact,
// and without them broken.
func TestAuditServiceVerifyPruned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv, _, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k.pem")
	if err := writeTestFile(keyFile, priv); err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	old := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	sink, err := audit.OpenFile(path, audit.WithMaxFileSize(1500))
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSigner(signer), audit.WithBatchSize(1), audit.WithClock(func() time.Time { return old }))
	for i := range 30 {
		if err := l.Review(context.Background(), "po", audit.Review{DecisionID: "d", By: "po", Note: "note " + string(rune('a'+i%26))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := audit.PruneFile(path, audit.PruneOptions{Before: old.Add(time.Hour), Signer: signer})
	if err != nil || len(res.Segments) == 0 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	src := func(context.Context) iter.Seq2[audit.Entry, error] { return audit.ReadFiles(path) }
	verify := func(opts ...server.AuditOption) *chaperonev1.AuditServiceVerifyResponse {
		svc := server.NewAuditService(src, nil, append([]server.AuditOption{server.WithAuditKeys(signer.Public())}, opts...)...)
		resp, err := svc.Verify(context.Background(), connect.NewRequest(&chaperonev1.AuditServiceVerifyRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	if got := verify(server.WithAuditPruned(func() ([]audit.PruneAnchor, error) { return audit.ReadPruneAnchors(path) })); !got.GetIntact() {
		t.Errorf("pruned log with its anchors: %v", got)
	}
	if got := verify(); got.GetIntact() {
		t.Errorf("pruned log without its anchors reported intact: %v", got)
	}
}

func writeTestFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
