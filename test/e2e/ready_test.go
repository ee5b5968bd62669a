package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestReadyzFollowsRedis runs the binary on a real redis-server: /readyz
// answers 503 naming the consent store while Redis is stopped and 200 once
// it is back, /healthz stays 200 throughout; and with --redis the decision
// log is written to the --audit-file given (it was silently sent to a Redis
// stream instead).
func TestReadyzFollowsRedis(t *testing.T) {
	t.Parallel()
	redisSrv := redistest.StartServer(t)
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	_, base := startServe(t, "--redis", "redis://"+redisSrv.Addr()+"/0", "--audit-file", auditFile)

	readyz := func() (int, string) {
		resp, err := httpClient().Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// waitFor polls /readyz (bounded) until it answers code.
	waitFor := func(step string, code int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, body := readyz()
			if got == code {
				if code != http.StatusOK && !bytes.Contains([]byte(body), []byte("consent-store")) {
					t.Errorf("%s: %q does not name the consent store", step, body)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still %d %q after 20s, want %d", step, got, body, code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	healthz := func(step string) {
		t.Helper()
		resp, err := httpClient().Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: /healthz %d", step, resp.StatusCode)
		}
	}

	waitFor("redis up", http.StatusOK)
	decisions := chaperonev1connect.NewDecisionServiceClient(httpClient(), base)
	resp, err := decisions.Check(context.Background(), connect.NewRequest(&chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/e2e", Organization: "Organization/o1"},
		PurposeOfUse: "TREAT",
	}))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.GetDecisionId()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(auditFile)
		if bytes.Contains(b, []byte(id)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("decision %s is not in --audit-file %s after 20s (%d bytes)", id, auditFile, len(b))
		}
		time.Sleep(50 * time.Millisecond)
	}

	redisSrv.Stop()
	waitFor("redis stopped", http.StatusServiceUnavailable)
	healthz("redis stopped")
	redisSrv.Restart()
	waitFor("redis restarted", http.StatusOK)
	healthz("redis restarted")
}

// TestAuditFileAndStream: serve --redis --audit-file F --audit-redis URL
// writes the decision log to the file and to the stream, each a chain of
// its own.
func TestAuditFileAndStream(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	url := "redis://" + addr + "/0"
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	const stream = "chaperone:audit:e2e"
	_, base := startServe(t, "--redis", url, "--audit-file", auditFile, "--audit-redis", url, "--audit-stream", stream)
	decisions := chaperonev1connect.NewDecisionServiceClient(httpClient(), base)
	resp, err := decisions.Check(context.Background(), connect.NewRequest(&chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/e2e", Organization: "Organization/o1"},
		PurposeOfUse: "TREAT",
	}))
	if err != nil {
		t.Fatal(err)
	}
	id := []byte(resp.Msg.GetDecisionId())
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(auditFile)
		inFile := bytes.Contains(b, id)
		inStream := false
		msgs, _ := rdb.XRange(context.Background(), stream, "-", "+").Result()
		for _, m := range msgs {
			for _, v := range m.Values {
				if s, ok := v.(string); ok && bytes.Contains([]byte(s), id) {
					inStream = true
				}
			}
		}
		if inFile && inStream {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: decision in the file %v, in the stream %v (%d entries)", inFile, inStream, len(msgs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
