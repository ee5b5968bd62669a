package e2e_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// TestServeHaltsWhenTheAuditLogIsCut: the live audit file of a running
// server is truncated, then deleted; the server neither continues from the
// cut nor starts a new chain: it answers DENY AUDIT_UNAVAILABLE, publishes
// chaperone_audit_halted 1, and writes nothing more.
func TestServeHaltsWhenTheAuditLogIsCut(t *testing.T) {
	t.Parallel()
	for _, cut := range []string{"truncate", "delete"} {
		t.Run(cut, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			auditFile := filepath.Join(dir, "audit.jsonl")
			bin, err := buildBinary()
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "audit", "keygen", "-o", filepath.Join(dir, "ak")).CombinedOutput(); err != nil {
				t.Fatalf("keygen: %v\n%s", err, out)
			}
			_, base := startServe(t, "--audit-file", auditFile, "--audit-key", filepath.Join(dir, "ak.pem"), "--audit-ack", "durable")
			client := chaperonev1connect.NewDecisionServiceClient(httpClient(), base)
			req := &chaperonev1.CheckRequest{
				Subject:      &chaperonev1.Subject{Id: "Patient/52", Kind: "patient", Roles: []string{"patient"}},
				Action:       "read",
				Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52"},
				PurposeOfUse: "PATRQT",
			}
			check := func() *chaperonev1.CheckResponse {
				t.Helper()
				resp, err := client.Check(context.Background(), connect.NewRequest(req))
				if err != nil {
					t.Fatal(err)
				}
				return resp.Msg
			}
			if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				t.Fatalf("before the cut: %v", r)
			}
			switch cut {
			case "truncate":
				if err := os.Truncate(auditFile, 0); err != nil {
					t.Fatal(err)
				}
			case "delete":
				if err := os.Remove(auditFile); err != nil {
					t.Fatal(err)
				}
			}
			// Durable: the first decision after the cut is the one whose
			// append finds it.
			for i := range 3 {
				r := check()
				if r.GetDecision() != chaperonev1.Decision_DECISION_DENY || len(r.GetReasons()) == 0 || r.GetReasons()[0].GetCode() != "AUDIT_UNAVAILABLE" {
					t.Fatalf("decision %d after the cut: %v, want DENY AUDIT_UNAVAILABLE", i, r)
				}
			}
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "\nchaperone_audit_halted 1\n") {
				t.Errorf("metrics do not say the audit writer halted:\n%s", grepLines(string(body), "chaperone_audit"))
			}
			b, err := os.ReadFile(auditFile)
			if len(b) != 0 || (cut == "delete" && !os.IsNotExist(err)) {
				t.Fatalf("the server wrote to the cut log: %d bytes, %v", len(b), err)
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
