package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

const tenantSystem = "https://chaperone.test/tenant"

// fhirServer is a small FHIR server on a loopback port: it answers GET
// base/Type/id with the resources it holds and counts what it is asked.
type fhirServer struct {
	url  string
	mu   sync.Mutex
	hits map[string]int
}

func (f *fhirServer) hitsOf(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

// resources of the FHIR server, by path under its base: a body, or a
// status with "status:NNN", or a body larger than the door takes.
var resources = map[string]string{
	"/Observation/o1":            `{"resourceType":"Observation","id":"o1","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}]},"subject":{"reference":"Patient/51"},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}`,
	"/Observation/o1/_history/1": `{"resourceType":"Observation","id":"o1","meta":{"versionId":"1","tag":[{"system":"` + tenantSystem + `","code":"o2"}]},"subject":{"reference":"Patient/51"}}`,
	"/Observation/o2":            `{"resourceType":"Observation","id":"o2","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o2"}]},"subject":{"reference":"Patient/51"}}`,
	"/Observation/abs":           `{"resourceType":"Observation","id":"abs","meta":{"tag":[{"system":"https://other.test/tag","code":"o2"},{"system":"` + tenantSystem + `","code":"Organization/o1"}]},"subject":{"reference":"BASE/Patient/52"}}`,
	"/Observation/eth":           `{"resourceType":"Observation","id":"eth","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}],"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]},"subject":{"reference":"Patient/51"}}`,
	"/Patient/51":                `{"resourceType":"Patient","id":"51","managingOrganization":{"reference":"Organization/o1"}}`,
	"/Patient/52":                `{"resourceType":"Patient","id":"52","managingOrganization":{"reference":"Organization/o2"}}`,
	"/Condition/con-1":           `{"resourceType":"Condition","id":"con-1","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}]},"subject":{"reference":"Patient/51"}}`,
	"/Observation/two":           `{"resourceType":"Observation","id":"two","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}]},"subject":{"reference":"Patient/51"},"patient":{"reference":"Patient/52"}}`,
	"/Observation/tenants":       `{"resourceType":"Observation","id":"tenants","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"},{"system":"` + tenantSystem + `","code":"o2"}]},"subject":{"reference":"Patient/51"}}`,
	"/Observation/ident":         `{"resourceType":"Observation","id":"ident","subject":{"identifier":{"value":"51"}}}`,
	"/Observation/versioned":     `{"resourceType":"Observation","id":"versioned","subject":{"reference":"Patient/51/_history/2"}}`,
	"/Observation/another":       `{"resourceType":"Observation","id":"zz","subject":{"reference":"Patient/51"}}`,
	"/Observation/typed":         `{"resourceType":"Condition","id":"typed","subject":{"reference":"Patient/51"}}`,
	"/Observation/garbage":       `<Observation/>`,
	"/Observation/twice":         `{"resourceType":"Observation","id":"twice"} {}`,
	"/Observation/dup":           `{"resourceType":"Observation","id":"dup","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}]},"subject":{"reference":"Patient/51"},"subject":{"reference":"Patient/52"}}`,
	"/Observation/case":          `{"resourceType":"Observation","id":"case","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}]},"Subject":{"reference":"Patient/52"}}`,
	"/Observation/big":           `{"resourceType":"Observation","id":"big","note":[{"text":"` + strings.Repeat("x", 5000) + `"}]}`,
	"/Observation/gone":          "status:410",
	"/Observation/err":           "status:500",
	"/Observation/forbidden":     "status:403",
	"/Observation/moved":         "status:302",
	"/Observation/missing":       "status:404",
	"/Patient/51/Observation":    `{"resourceType":"Bundle"}`,
	"/Observation/slow":          "block",
}

func newFHIRServer(t *testing.T) *fhirServer {
	t.Helper()
	f := &fhirServer{hits: map[string]int{}}
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/base")
		f.mu.Lock()
		f.hits[path]++
		f.mu.Unlock()
		if r.Method != http.MethodGet || r.Header.Get("Accept") != "application/fhir+json" || r.URL.RawQuery != "" {
			w.WriteHeader(http.StatusNotAcceptable)
			return
		}
		body, ok := resources[path]
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
		case body == "block":
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case strings.HasPrefix(body, "status:"):
			code := map[string]int{"status:410": 410, "status:500": 500, "status:403": 403, "status:302": 302, "status:404": 404}[body]
			if code == 302 {
				w.Header().Set("Location", "/base/Observation/o1")
			}
			w.WriteHeader(code)
		default:
			w.Header().Set("Content-Type", "application/fhir+json")
			_, _ = w.Write([]byte(strings.ReplaceAll(body, "BASE", "http://"+r.Host+"/base")))
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	f.url = srv.URL + "/base"
	return f
}

// attributesGateway is the gateway of the tests' file with resourcePhase
// none (so that only a fully decided request can be allowed), the tenant
// tag system and attributes from fhirURL.
func (k *keys) attributesGateway(t *testing.T, fhirURL, extra string, o gateway.Options) *gateway.Gateway {
	t.Helper()
	cfg, err := gateway.Parse([]byte(k.config(gateway.PhaseNone) + "tenantTagSystem: " + tenantSystem + "\nattributes:\n  fhirServer: " + fhirURL + "\n  timeout: 300ms\n  maxBodyBytes: 4096\n" + extra))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g
}

// With attributes.fhirServer, the door fetches the target of a read or a
// write by id and decides it in the resource phase with the target's
// patient, owning organization, labels, categories and codes; it fails
// closed on every fetch that does not give a readable resource, and a
// target the server does not have is decided in the request phase.
func TestAttributes(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	fs := newFHIRServer(t)
	g := k.attributesGateway(t, fs.url, "", gateway.Options{})
	url, rec := serve(t, g)
	tok := "Bearer " + k.sign(t, "ES256", firstPartyClinician())
	labels := func(cs ...string) []*chaperonev1.Coding {
		var out []*chaperonev1.Coding
		for _, c := range cs {
			out = append(out, &chaperonev1.Coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: c})
		}
		return out
	}
	tests := []struct {
		name, method, uri string
		fetched           string // the path fetched, "" for none
		status            int
		code              string                // a reason code of a deny
		phase             string                // of the recorded request; "" when nothing was decided (a target that could not be read is recorded as a request-phase DENY naming why)
		resource          *chaperonev1.Resource // of the recorded request, when phase is resource
	}{
		{"an own organization's observation is allowed at the door", "GET", "/fhir/Observation/o1", "/Observation/o1", 200, "", "resource",
			&chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/51", Organization: "Organization/o1",
				Categories: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"}},
				Codes:      []*chaperonev1.Coding{{System: "http://loinc.org", Code: "8867-4"}}}},
		{"another organization's observation", "GET", "/fhir/Observation/o2", "/Observation/o2", 403, "TENANT_MISMATCH", "resource",
			&chaperonev1.Resource{Type: "Observation", Id: "o2", Patient: "Patient/51", Organization: "Organization/o2"}},
		{"a vread fetches that version", "GET", "/fhir/Observation/o1/_history/1", "/Observation/o1/_history/1", 403, "TENANT_MISMATCH", "resource",
			&chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/51", Organization: "Organization/o2"}},
		{"an absolute reference and a spelt-out tenant tag", "GET", "/fhir/Observation/abs", "/Observation/abs", 200, "", "resource",
			&chaperonev1.Resource{Type: "Observation", Id: "abs", Patient: "Patient/52", Organization: "Organization/o1"}},
		// The label reaches the decision: an ETH-labelled read needs a
		// treating relationship the door's clinician does not have.
		{"a security label", "GET", "/fhir/Observation/eth", "/Observation/eth", 403, "TREATING_RELATIONSHIP_REQUIRED", "resource",
			&chaperonev1.Resource{Type: "Observation", Id: "eth", Patient: "Patient/51", Organization: "Organization/o1", SecurityLabels: labels("ETH")}},
		{"a Patient is its own compartment, owned by its managing organization", "GET", "/fhir/Patient/51", "/Patient/51", 200, "", "resource",
			&chaperonev1.Resource{Type: "Patient", Id: "51", Patient: "Patient/51", Organization: "Organization/o1"}},
		{"a Patient of another organization", "GET", "/fhir/Patient/52", "/Patient/52", 403, "TENANT_MISMATCH", "resource",
			&chaperonev1.Resource{Type: "Patient", Id: "52", Patient: "Patient/52", Organization: "Organization/o2"}},
		{"a delete is decided on its target", "DELETE", "/fhir/Condition/con-1", "/Condition/con-1", 403, "DEVICE_UNTRUSTED", "resource",
			&chaperonev1.Resource{Type: "Condition", Id: "con-1", Patient: "Patient/51", Organization: "Organization/o1"}},
		{"a target the server does not have is decided in the request phase", "GET", "/fhir/Observation/missing", "/Observation/missing", 403, gateway.ReasonNoResourceEnforcement, "request", nil},
		{"a gone target too", "PUT", "/fhir/Observation/gone", "/Observation/gone", 403, "", "request", nil},
		{"a search is not fetched", "GET", "/fhir/Observation?patient=Patient/51", "", 403, gateway.ReasonNoResourceEnforcement, "request", nil},
		{"a compartment search is not fetched", "GET", "/fhir/Patient/51/Observation", "", 403, gateway.ReasonNoResourceEnforcement, "request", nil},
		{"two patients", "GET", "/fhir/Observation/two", "/Observation/two", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"two tenants", "GET", "/fhir/Observation/tenants", "/Observation/tenants", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"a subject by identifier only", "GET", "/fhir/Observation/ident", "/Observation/ident", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"a versioned patient reference", "GET", "/fhir/Observation/versioned", "/Observation/versioned", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"another id answered", "GET", "/fhir/Observation/another", "/Observation/another", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"another type answered", "GET", "/fhir/Observation/typed", "/Observation/typed", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"not JSON", "GET", "/fhir/Observation/garbage", "/Observation/garbage", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"two JSON values", "GET", "/fhir/Observation/twice", "/Observation/twice", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"a member twice", "GET", "/fhir/Observation/dup", "/Observation/dup", 403, gateway.ReasonTargetInvalid, "request", nil},
		{"a member in another case is not FHIR's", "GET", "/fhir/Observation/case", "/Observation/case", 200, "", "resource",
			&chaperonev1.Resource{Type: "Observation", Id: "case", Organization: "Organization/o1"}},
		{"a body over the bound", "GET", "/fhir/Observation/big", "/Observation/big", 403, gateway.ReasonTargetUnavailable, "request", nil},
		{"a server error", "GET", "/fhir/Observation/err", "/Observation/err", 403, gateway.ReasonTargetUnavailable, "request", nil},
		{"the server refuses the door", "PATCH", "/fhir/Observation/forbidden", "/Observation/forbidden", 403, gateway.ReasonTargetUnavailable, "request", nil},
		{"a redirect is not followed", "GET", "/fhir/Observation/moved", "/Observation/moved", 403, gateway.ReasonTargetUnavailable, "request", nil},
		{"no answer in time", "GET", "/fhir/Observation/slow", "/Observation/slow", 403, gateway.ReasonTargetUnavailable, "request", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := 0
			if tc.fetched != "" {
				before = fs.hitsOf(tc.fetched)
			}
			r := forward(t, url, map[string]string{"X-Original-Method": tc.method, "X-Original-URI": tc.uri, "Authorization": tok})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.fetched != "" && fs.hitsOf(tc.fetched) != before+1 {
				t.Errorf("%s fetched %d times, want once", tc.fetched, fs.hitsOf(tc.fetched)-before)
			}
			if tc.status == 200 {
				raw, _ := base64.RawURLEncoding.DecodeString(r.header.Get(gateway.HeaderObligations))
				var obl map[string]any
				if err := json.Unmarshal(raw, &obl); err != nil || obl["perEntryCheck"] != nil {
					t.Errorf("obligations %s (%v): a resource-phase ALLOW needs no per-entry check", raw, err)
				}
			} else if tc.code != "" && !slices.Contains(outcomeCodes(t, r), tc.code) {
				t.Errorf("codes %v, want %s", outcomeCodes(t, r), tc.code)
			}
			id := r.header.Get(gateway.HeaderDecisionID)
			if tc.phase == "" {
				if id != "" {
					t.Errorf("decision %s for a target that could not be read", id)
				}
				return
			}
			var got *chaperonev1.CheckRequest
			var resp *chaperonev1.CheckResponse
			for _, x := range rec.All() {
				if x.Resp.GetDecisionId() == id {
					got, resp = x.Req, x.Resp
				}
			}
			if got == nil {
				t.Fatalf("no record of decision %q", id)
			}
			if strings.HasPrefix(tc.code, "TARGET_") && (resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || len(resp.GetReasons()) != 1 || resp.GetReasons()[0].GetCode() != tc.code) {
				t.Errorf("recorded %v, want a DENY %s", resp, tc.code)
			}
			if got.GetContext().GetPhase() != tc.phase {
				t.Errorf("phase %q, want %q", got.GetContext().GetPhase(), tc.phase)
			}
			if tc.resource != nil && !proto.Equal(got.GetResource(), tc.resource) {
				t.Errorf("resource %v, want %v", got.GetResource(), tc.resource)
			}
		})
	}
}

// The FHIR server cannot be reached: every read by id is refused.
func TestAttributesServerDown(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	down := srv.URL
	srv.Close()
	g := k.attributesGateway(t, down, "", gateway.Options{})
	url, rec := serve(t, g)
	tok := "Bearer " + k.sign(t, "ES256", firstPartyClinician())
	r := forward(t, url, map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/fhir/Observation/o1", "Authorization": tok})
	if r.status != 403 || !slices.Contains(outcomeCodes(t, r), gateway.ReasonTargetUnavailable) {
		t.Fatalf("status %d %s, want 403 %s", r.status, r.body, gateway.ReasonTargetUnavailable)
	}
	// The refusal is on the audit chain: a DENY naming why, with the
	// decision id the answer carries.
	all := rec.All()
	if len(all) != 1 || all[0].Resp.GetDecision() != chaperonev1.Decision_DECISION_DENY ||
		all[0].Resp.GetReasons()[0].GetCode() != gateway.ReasonTargetUnavailable ||
		all[0].Resp.GetDecisionId() != r.header.Get(gateway.HeaderDecisionID) || all[0].Req.GetContext().GetPhase() != gateway.PhaseRequest {
		t.Errorf("records %v, want one request-phase DENY %s with the answer's decision id", all, gateway.ReasonTargetUnavailable)
	}
}

// Fetched attributes are reused for the bundle's cacheTtl, and no longer;
// the cache holds cacheEntries targets at most.
func TestAttributesCache(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	fs := newFHIRServer(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	var ttl atomic.Int64
	ttl.Store(int64(30 * time.Second))
	g := k.attributesGateway(t, fs.url, "  cacheEntries: 2\n", gateway.Options{Now: clock, CacheTTL: func() time.Duration { return time.Duration(ttl.Load()) }})
	url, _ := serve(t, g)
	tok := "Bearer " + k.sign(t, "ES256", firstPartyClinician())
	read := func(uri string) {
		t.Helper()
		r := forward(t, url, map[string]string{"X-Original-Method": "GET", "X-Original-URI": uri, "Authorization": tok})
		if r.status != 200 && r.status != 403 {
			t.Fatalf("%s: status %d", uri, r.status)
		}
	}
	steps := []struct {
		do   func()
		path string
		hits int
	}{
		{func() { read("/fhir/Observation/o1") }, "/Observation/o1", 1},
		{func() { read("/fhir/Observation/o1") }, "/Observation/o1", 1},                                   // cached
		{func() { now.Add(int64(29 * time.Second)); read("/fhir/Observation/o1") }, "/Observation/o1", 1}, // still fresh
		{func() { now.Add(int64(2 * time.Second)); read("/fhir/Observation/o1") }, "/Observation/o1", 2},  // expired
		{func() { read("/fhir/Observation/o2"); read("/fhir/Patient/51") }, "/Observation/o1", 2},         // o1 is pushed out
		{func() { read("/fhir/Observation/o1") }, "/Observation/o1", 3},
		{func() { ttl.Store(0); read("/fhir/Observation/o1") }, "/Observation/o1", 4}, // a cacheTtl of 0: never reused
		{func() { read("/fhir/Observation/o1") }, "/Observation/o1", 5},
	}
	for i, s := range steps {
		s.do()
		if got := fs.hitsOf(s.path); got != s.hits {
			t.Fatalf("step %d: %s fetched %d times, want %d", i, s.path, got, s.hits)
		}
	}
}

// firstPartyClinician is clinician() through the platform's own app, which
// needs no business associate agreement.
func firstPartyClinician() map[string]any {
	c := clinician()
	c["client_id"] = "clinician-app"
	return c
}

// With attributes.bearerTokenFile the door sends the file's token to the
// FHIR server, read again for every fetch (a rotated token is used at
// once); a file that cannot be read fails the fetch closed.
func TestAttributesBearerToken(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	fs := newFHIRServer(t)
	var want atomic.Value
	want.Store("Bearer first")
	guarded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want.Load().(string) {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		fwd, err := http.NewRequestWithContext(r.Context(), http.MethodGet, fs.url+r.URL.Path, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fwd.Header.Set("Accept", r.Header.Get("Accept"))
		resp, err := http.DefaultClient.Do(fwd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(guarded.Close)
	tokenFile := filepath.Join(t.TempDir(), "fhir-token")
	if err := os.WriteFile(tokenFile, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := k.attributesGateway(t, guarded.URL, "  bearerTokenFile: "+tokenFile+"\n", gateway.Options{})
	url, _ := serve(t, g)
	tok := "Bearer " + k.sign(t, "ES256", firstPartyClinician())
	ask := func() reply {
		return forward(t, url, map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/fhir/Observation/o1", "Authorization": tok})
	}
	if r := ask(); r.status != 200 {
		t.Fatalf("with the token: %d %s", r.status, r.body)
	}
	want.Store("Bearer second") // the server now wants another token
	if r := ask(); r.status != 403 || !slices.Contains(outcomeCodes(t, r), gateway.ReasonTargetUnavailable) {
		t.Fatalf("old token: %d %s, want 403 TARGET_UNAVAILABLE", r.status, r.body)
	}
	if err := os.WriteFile(tokenFile, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := ask(); r.status != 200 {
		t.Fatalf("rotated token: %d %s", r.status, r.body)
	}
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if r := ask(); r.status != 403 || !slices.Contains(outcomeCodes(t, r), gateway.ReasonTargetUnavailable) {
		t.Fatalf("no token file: %d %s, want 403 TARGET_UNAVAILABLE", r.status, r.body)
	}
}

// A bearer token is never configured for a FHIR server reached in clear
// text beyond loopback, nor from an empty file.
func TestAttributesBearerTokenConfig(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, server, file string
		ok                 bool
	}{
		{"https", "https://fhir.example.org/r4", good, true},
		{"loopback http", "http://127.0.0.1:8080/r4", good, true},
		{"remote http", "http://fhir.example.org/r4", good, false},
		{"empty file", "https://fhir.example.org/r4", empty, false},
		{"missing file", "https://fhir.example.org/r4", filepath.Join(dir, "none"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gateway.yaml")
			cfg := k.config(gateway.PhaseNone) + "attributes:\n  fhirServer: " + tc.server + "\n  bearerTokenFile: " + tc.file + "\n"
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := gateway.Load(path)
			if (err == nil) != tc.ok {
				t.Fatalf("Load = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
