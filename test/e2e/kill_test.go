package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

var decisionIDs = regexp.MustCompile(`"decisionId":"([^"]+)"`)

// TestKill9AuditAck sends Checks and BatchChecks of 200 from several
// clients, kills the server with SIGKILL in the middle, and counts the
// answered decisions (not AUDIT_UNAVAILABLE) missing from the audit log.
// With --audit-ack durable none may be missing; with queued the count is
// reported (up to the group-commit delay's worth can be lost). Either way
// the log verifies as an open log (--allow-open-tail).
func TestKill9AuditAck(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"durable", "queued"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			auditFile := filepath.Join(dir, "audit.jsonl")
			bin, err := buildBinary()
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "audit", "keygen", "-o", filepath.Join(dir, "ak")).CombinedOutput(); err != nil {
				t.Fatalf("keygen: %v\n%s", err, out)
			}
			cmd, base := startServe(t, "--audit-file", auditFile, "--audit-key", filepath.Join(dir, "ak.pem"), "--audit-ack", mode)
			client := chaperonev1connect.NewDecisionServiceClient(httpClient(), base)
			req := func(i int) *chaperonev1.CheckRequest {
				return &chaperonev1.CheckRequest{
					Subject:      &chaperonev1.Subject{Id: "Patient/52", Kind: "patient", Roles: []string{"patient"}},
					Action:       "read",
					Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o" + strings.Repeat("1", 1+i%5), Patient: "Patient/52"},
					PurposeOfUse: "PATRQT",
				}
			}
			var (
				mu            sync.Mutex
				single, batch []string
				wg            sync.WaitGroup
				stop          = make(chan struct{})
				answered      = func(r *chaperonev1.CheckResponse) bool {
					return r.GetReasons() == nil || r.GetReasons()[0].GetCode() != "AUDIT_UNAVAILABLE"
				}
				ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			)
			defer cancel()
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						resp, err := client.Check(ctx, connect.NewRequest(req(g+i)))
						if err != nil {
							return // killed
						}
						if answered(resp.Msg) {
							mu.Lock()
							single = append(single, resp.Msg.GetDecisionId())
							mu.Unlock()
						}
					}
				}()
			}
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					br := &chaperonev1.BatchCheckRequest{}
					for i := range 200 {
						br.Requests = append(br.Requests, req(i))
					}
					for {
						select {
						case <-stop:
							return
						default:
						}
						resp, err := client.BatchCheck(ctx, connect.NewRequest(br))
						if err != nil {
							return
						}
						mu.Lock()
						for _, r := range resp.Msg.GetResponses() {
							if answered(r) {
								batch = append(batch, r.GetDecisionId())
							}
						}
						mu.Unlock()
					}
				}()
			}
			time.Sleep(1500 * time.Millisecond) // load while the server writes
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_, _ = cmd.Process.Wait()
			close(stop)
			wg.Wait()
			logged, err := os.ReadFile(auditFile)
			if err != nil {
				t.Fatal(err)
			}
			inLog := map[string]bool{}
			for _, m := range decisionIDs.FindAllSubmatch(logged, -1) {
				inLog[string(m[1])] = true
			}
			missing := func(ids []string) int {
				n := 0
				for _, id := range ids {
					if !inLog[id] {
						n++
					}
				}
				return n
			}
			ms, mb := missing(single), missing(batch)
			t.Logf("--audit-ack %s, kill -9 under load: Check %d of %d answered decisions missing from the log; BatchCheck(200) %d of %d",
				mode, ms, len(single), mb, len(batch))
			if len(single) == 0 || len(batch) == 0 {
				t.Fatalf("no load before the kill: %d checks, %d batch decisions answered", len(single), len(batch))
			}
			if mode == "durable" && ms+mb > 0 {
				t.Fatalf("durable: %d answered decisions missing from the log", ms+mb)
			}
			out, err := exec.Command(bin, "audit", "verify", auditFile, "--pub", filepath.Join(dir, "ak.pub.pem"), "--allow-open-tail").CombinedOutput()
			if err != nil {
				t.Fatalf("verify after kill -9: %v\n%s", err, out)
			}
		})
	}
}
