package e2e_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServeForwardAuth runs `serve --gateway FILE` and asks its
// forward-auth door as nginx's auth_request does: an allowed read (200 with
// the decision headers, the decision in the audit log), a denied read and
// an unmappable path (403 OperationOutcome), no token (401).
func TestServeForwardAuth(t *testing.T) {
	t.Parallel()
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	_, base, token := serveGateway(t, "--audit-file", auditFile)

	client := &http.Client{Timeout: 10 * time.Second}
	ask := func(uri string, withToken bool) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+"/authz/forward", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", uri)
		if withToken {
			req.Header.Set("Authorization", token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	allowed, _ := ask("/fhir/Observation/o1", true)
	id := allowed.Header.Get("X-Chaperone-Decision-Id")
	if allowed.StatusCode != 200 || id == "" || allowed.Header.Get("X-Chaperone-Obligations") == "" {
		t.Fatalf("read: %d %v, want 200 with the decision headers", allowed.StatusCode, allowed.Header)
	}
	for _, tc := range []struct {
		uri    string
		token  bool
		status int
		code   string
	}{
		{"/fhir/Claim/c1", true, 403, "NO_PERMIT"},
		{"/fhir/Observation/a%2Fb", true, 403, "ENCODED_SLASH"},
		{"/fhir/Observation/o1", false, 401, "UNAUTHENTICATED"},
	} {
		resp, body := ask(tc.uri, tc.token)
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/fhir+json" || !bytes.Contains(body, []byte(`"code":"`+tc.code+`"`)) {
			t.Errorf("%s: %d %s, want %d naming %s", tc.uri, resp.StatusCode, body, tc.status, tc.code)
		}
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(auditFile)
		if bytes.Contains(b, []byte(id)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("decision %s not in the audit log after 20s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
