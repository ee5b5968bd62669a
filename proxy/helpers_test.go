package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/chaperone-pdp/chaperone/client"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/pep"
	"github.com/chaperone-pdp/chaperone/policies"
	"github.com/chaperone-pdp/chaperone/proxy"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

const (
	tenant   = "https://chaperone.test/tenant"
	issuer   = "https://auth.proxy.test"
	audience = "https://fhir.proxy.test"
)

// pdp starts a real server with the reference bundle on a loopback port.
func pdp(t *testing.T) (string, *testkit.Recorder) {
	t.Helper()
	eng := engine.New(testkit.NoConsents{})
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	rec := &testkit.Recorder{}
	hs := server.New(eng, v, server.WithRecorder(rec)).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String(), rec
}

// fhirServer is a FHIR server of fixed answers: path?query -> body. It
// counts what reaches it.
type fhirServer struct {
	mu      sync.Mutex
	answers map[string]string
	hits    []string
	bodies  []string
	url     string
}

func newFHIRServer(t *testing.T, answers map[string]string) *fhirServer {
	t.Helper()
	f := &fhirServer{answers: answers}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.hits = append(f.hits, r.Method+" "+r.URL.RequestURI())
		f.bodies = append(f.bodies, string(reqBody))
		body, ok := f.answers[r.Method+" "+strings.TrimPrefix(r.URL.RequestURI(), "/fhir")]
		f.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Patient Jane Doe has no such thing"}]}`)
			return
		}
		ct := "application/fhir+json"
		if strings.HasPrefix(body, "<") {
			ct = "application/fhir+xml"
		}
		w.Header().Set("Content-Type", ct)
		_, _ = io.WriteString(w, strings.ReplaceAll(body, "UPSTREAM", f.url))
	}))
	t.Cleanup(ts.Close)
	f.url = ts.URL + "/fhir"
	return f
}

func (f *fhirServer) reached() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.hits...)
}

// rig is a proxy in front of a fhirServer, deciding at a real PDP.
type rig struct {
	url   string
	fhir  *fhirServer
	rec   *testkit.Recorder
	key   jwk.Key
	token string
}

func newRig(t *testing.T, answers map[string]string, pdpURL string) *rig {
	t.Helper()
	return newRigWith(t, answers, pdpURL, gateway.Options{})
}

// newRigWith is newRig with the gateway's options (its revocation list).
func newRigWith(t *testing.T, answers map[string]string, pdpURL string, gopts gateway.Options) *rig {
	t.Helper()
	var rec *testkit.Recorder
	if pdpURL == "" {
		pdpURL, rec = pdp(t)
	}
	dir := t.TempDir()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, "k")
	pub, _ := jwk.PublicKeyOf(priv)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, _ := json.Marshal(set)
	if err := os.WriteFile(filepath.Join(dir, "keys.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	gf := filepath.Join(dir, "gateway.yaml")
	_ = os.WriteFile(gf, []byte("fhirBase: /fhir\ntokens:\n  jwks: keys.json\n  issuer: "+issuer+"\n  audience: "+audience+
		"\nclaims:\n  id: fhirUser\n  roles: roles\n  organization: org\npurposeOfUse:\n  header: X-Purpose-Of-Use\n  default: TREAT\nresourcePhase: proxy\ntenantTagSystem: "+tenant+"\n"), 0o600)
	cfg, err := gateway.Load(gf)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	dc, err := client.New(pdpURL, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	f := newFHIRServer(t, answers)
	up, _ := url.Parse(f.url)
	p, err := proxy.New(proxy.Options{Upstream: up, Gateway: g, Decider: dc, Apply: pep.Apply, DeviceTrust: "managed"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	r := &rig{url: ts.URL + "/fhir", fhir: f, rec: rec, key: priv}
	r.token = r.sign(t, map[string]any{"fhirUser": "Practitioner/d1", "roles": "clinician", "org": "Organization/o1"})
	return r
}

func (r *rig) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	b := jwt.NewBuilder().Subject("u").Issuer(issuer).Audience([]string{audience}).IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour))
	for k, v := range claims {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), r.key))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + string(s)
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (r *rig) do(t *testing.T, method, path, body string, h ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", r.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// res builds a resource of org for patient.
func res(typ, id, org, patient, extra string) string {
	s := `{"resourceType":"` + typ + `","id":"` + id + `","meta":{"versionId":"1","tag":[{"system":"` + tenant + `","code":"` + org + `"}]`
	s += `}`
	if patient != "" {
		if typ == "Patient" {
			s += `,"managingOrganization":{"reference":"Organization/` + org + `"}`
		} else {
			s += `,"subject":{"reference":"` + patient + `"}`
		}
	}
	return s + extra + `}`
}

// set answers key ("GET /path?query") with body from now on.
func (f *fhirServer) set(key, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[key] = body
}
