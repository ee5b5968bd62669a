package server_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

// downSink is an audit sink that cannot store anything.
type downSink struct{}

func (downSink) Append(context.Context, *audit.Batch) error { return errors.New("disk gone") }
func (downSink) Close() error                               { return nil }

// startAudited serves the reference bundle recording decisions in l.
func startAudited(t *testing.T, l *audit.Log) string {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	return serveSplit(t, server.New(eng, v, server.WithRecorder(l)))
}

// With the audit sink down and its queue full, fail-closed answers DENY
// AUDIT_UNAVAILABLE; fail-open keeps answering and counts the drops.
func TestAuditSinkDown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		failClosed   bool
		wantDecision string
		wantReason   string
	}{
		{name: "fail-closed", failClosed: true, wantDecision: "DECISION_DENY", wantReason: "AUDIT_UNAVAILABLE"},
		{name: "fail-open", failClosed: false, wantDecision: "DECISION_ALLOW", wantReason: "POLICY_PERMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := audit.New(downSink{}, audit.WithQueueSize(1), audit.WithBatchSize(1),
				audit.WithEnqueueTimeout(time.Millisecond), audit.WithFailClosed(tt.failClosed))
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				_ = l.Close(ctx) // the sink never recovers: records are reported lost
			})
			base := startAudited(t, l)
			client := &http.Client{Timeout: 10 * time.Second}
			var last map[string]any
			for range 5 { // the first ones fit in the writer's batch and the queue
				_, last = postJSON(t, client, base+"/chaperone.v1.DecisionService/Check", pinnedRequest)
			}
			reasons, _ := last["reasons"].([]any)
			if last["decision"] != tt.wantDecision || len(reasons) == 0 || reasons[0].(map[string]any)["code"] != tt.wantReason {
				t.Fatalf("answer %v, want %s %s", last, tt.wantDecision, tt.wantReason)
			}
			st := l.Stats()
			if tt.failClosed && st.Rejected == 0 || !tt.failClosed && st.Dropped == 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

// Every decision answered has its record once the log is closed.
func TestAuditRecordsEveryAnswer(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink)
	base := startAudited(t, l)
	client := &http.Client{Timeout: 10 * time.Second}
	for range 20 {
		if _, out := postJSON(t, client, base+"/chaperone.v1.DecisionService/Check", pinnedRequest); out["decision"] != "DECISION_ALLOW" {
			t.Fatalf("answer %v", out)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := audit.Verify(audit.ReadFiles(path))
	if err != nil || s.Decisions != 20 {
		t.Fatalf("Verify = %+v, %v; want 20 decisions", s, err)
	}
}
