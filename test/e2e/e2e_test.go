package e2e_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// buildBinary builds cmd/chaperone once per test binary.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "chaperone-e2e-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "chaperone")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/chaperone").CombinedOutput()
	if err != nil {
		return "", errors.New(string(out))
	}
	return bin, nil
})

var listening = regexp.MustCompile(`listening on https?://(\S+)`)

// startServe runs `chaperone serve` on a free loopback port and returns the
// process and its base URL.
func startServe(t testing.TB, args ...string) (*exec.Cmd, string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start listening within 60s")
		return nil, ""
	}
}

// TestShutdownKeepsEveryAuditRecord sends Checks from several clients,
// stops the server with SIGTERM in the middle, and requires that every
// decision a client received is in the audit log and that the log verifies.
func TestShutdownKeepsEveryAuditRecord(t *testing.T) {
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
	cmd, base := startServe(t, "--audit-file", auditFile, "--audit-key", filepath.Join(dir, "ak.pem"))

	client := chaperonev1connect.NewDecisionServiceClient(httpClient(), base)
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Patient/52", Kind: "patient", Roles: []string{"patient"}},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52"},
		PurposeOfUse: "PATRQT",
	}
	var (
		mu       sync.Mutex
		answered []string
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := client.Check(context.Background(), connect.NewRequest(req))
				if err != nil {
					return // the server has gone away
				}
				mu.Lock()
				answered = append(answered, resp.Msg.GetDecisionId())
				mu.Unlock()
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("serve exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit within 30s of SIGTERM")
	}
	wg.Wait()
	if len(answered) == 0 {
		t.Fatal("no decision was answered before the shutdown")
	}

	logged, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, id := range answered {
		if !strings.Contains(string(logged), `"`+id+`"`) {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d answered decisions are missing from the audit log", missing, len(answered))
	}
	out, err := exec.Command(bin, "audit", "verify", auditFile, "--pub", filepath.Join(dir, "ak.pub.pem")).CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	t.Logf("%d decisions answered, all in the audit log; verify: %s", len(answered), strings.TrimSpace(string(out)))
}
