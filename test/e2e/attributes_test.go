package e2e_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeGatewayAttributes runs `serve --gateway FILE` with
// attributes.fhirServer naming a FHIR server on loopback: a read by id is
// decided at the door in the resource phase with the target's tenant tag
// (an own organization's observation allowed without perEntryCheck,
// another's denied TENANT_MISMATCH), every read fetches again (the
// reference bundle's cacheTtl is 0s), and the server down is
// TARGET_UNAVAILABLE.
func TestServeGatewayAttributes(t *testing.T) {
	t.Parallel()
	const tenant = "https://e2e.test/tenant"
	var hits atomic.Int64
	up := atomic.Bool{}
	up.Store(true)
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/fhir/Observation/")
		org := map[string]string{"o1": "o1", "o2": "o2"}[id]
		if org == "" || r.Header.Get("Accept") != "application/fhir+json" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, `{"resourceType":"Observation","id":"`+id+`","meta":{"tag":[{"system":"`+tenant+`","code":"`+org+`"}]},"subject":{"reference":"Patient/51"}}`)
	}))
	t.Cleanup(fhir.Close)
	_, base, token := serveGatewayWith(t, "tenantTagSystem: "+tenant+"\nattributes:\n  fhirServer: "+fhir.URL+"/fhir\n")

	client := &http.Client{Timeout: 10 * time.Second}
	ask := func(uri string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+"/authz/forward", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", uri)
		req.Header.Set("Authorization", token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for i := range 2 {
		resp, _ := ask("/fhir/Observation/o1")
		obl, _ := base64.RawURLEncoding.DecodeString(resp.Header.Get("X-Chaperone-Obligations"))
		if resp.StatusCode != 200 || bytes.Contains(obl, []byte("perEntryCheck")) {
			t.Fatalf("read %d: %d obligations %s, want 200 decided at the door", i, resp.StatusCode, obl)
		}
		if got := hits.Load(); got != int64(i+1) {
			t.Fatalf("read %d: %d fetches, want %d (cacheTtl 0s)", i, got, i+1)
		}
	}
	if resp, body := ask("/fhir/Observation/o2"); resp.StatusCode != 403 || !bytes.Contains(body, []byte(`"code":"TENANT_MISMATCH"`)) {
		t.Errorf("another tenant's read: %d %s, want 403 TENANT_MISMATCH", resp.StatusCode, body)
	}
	up.Store(false)
	if resp, body := ask("/fhir/Observation/o1"); resp.StatusCode != 403 || !bytes.Contains(body, []byte(`"code":"TARGET_UNAVAILABLE"`)) {
		t.Errorf("server down: %d %s, want 403 TARGET_UNAVAILABLE", resp.StatusCode, body)
	}
}
