package authzen_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/policies"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

type noConsents = testkit.NoConsents

type record = testkit.Record

type recorder = testkit.Recorder

// byDecisionID counts r's records per decision id.
func byDecisionID(r *recorder) map[string]int {
	out := map[string]int{}
	for _, rec := range r.All() {
		out[rec.Resp.GetDecisionId()]++
	}
	return out
}

// testServer is a real server on a loopback port with the AuthZEN door.
type testServer struct {
	url      string
	recorder *recorder
}

// door turns the authzen routes into server routes, as serve does.
func door(s *server.Server) []server.Route {
	var routes []server.Route
	for _, r := range authzen.New(s).Routes() {
		routes = append(routes, server.Route{Pattern: r.Pattern, Procedure: r.Procedure, Handler: r.Handler, Batch: r.Batch})
	}
	return routes
}

// start serves the reference bundle with the door; guard, when not nil,
// is installed in front.
func start(t *testing.T, guard *server.Guard, extra ...server.Option) *testServer {
	t.Helper()
	// Practitioner/p1 treats Patient/52 (the reference bundle requires a
	// treating relationship for a clinician's sensitive reads).
	rels := consentstore.NewMemoryRelationships(nil)
	if _, err := rels.PutRelationship(context.Background(), consentstore.Relationship{Kind: consentstore.RelationshipCareTeam,
		Patient: "Patient/52", Practitioner: "Practitioner/p1", Source: "CareTeam/ct1"}); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(noConsents{}, engine.WithRelationships(rels))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	opts := []server.Option{server.WithRecorder(rec), server.WithDoor(door)}
	opts = append(opts, extra...)
	if guard != nil {
		opts = append(opts, server.WithMiddleware(guard.Middleware), server.WithHandlerOptions(guard.HandlerOptions()...))
	}
	hs := server.New(eng, v, opts...).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &testServer{url: "http://" + ln.Addr().String(), recorder: rec}
}

// reply is an HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
	return out
}

func do(t *testing.T, method, url, contentType, body string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func post(t *testing.T, url, body string) reply {
	t.Helper()
	return do(t, http.MethodPost, url, "application/json", body, nil)
}

// decisionOf reads decision, reasons, obligation types and reason_admin
// of one AuthZEN decision object.
type decisionOf struct {
	decision    bool
	decisionID  string
	reasons     []string
	obligations map[string]any // type → properties
	admin       string
}

func readDecision(t *testing.T, m map[string]any) decisionOf {
	t.Helper()
	d := decisionOf{obligations: map[string]any{}}
	dec, ok := m["decision"].(bool)
	if !ok {
		t.Fatalf("no boolean decision in %v", m)
	}
	d.decision = dec
	c, _ := m["context"].(map[string]any)
	d.decisionID, _ = c["decision_id"].(string)
	for _, r := range c["reasons"].([]any) {
		d.reasons = append(d.reasons, r.(string))
	}
	for _, o := range c["obligations"].([]any) {
		ob := o.(map[string]any)
		d.obligations[ob["type"].(string)] = ob["properties"]
	}
	if a, ok := c["reason_admin"].(map[string]any); ok {
		d.admin, _ = a["en"].(string)
	}
	return d
}

// A token issuer for guard tests.
const (
	testIssuer   = "https://idp.chaperone.test"
	testAudience = "chaperone"
)

type issuer struct {
	priv jwk.Key
	jwks string // path of the public key set
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, "k1")
	_ = priv.Set(jwk.AlgorithmKey, jwa.ES256())
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &issuer{priv: priv, jwks: path}
}

func (i *issuer) token(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewBuilder().Subject(sub).Issuer(testIssuer).Audience([]string{testAudience}).
		IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), i.priv))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// guard authenticates tokens of iss and authorizes by cfg, rate limiting
// each caller to burst decisions (none when 0).
func (i *issuer) guard(t *testing.T, cfg callers.AuthzConfig, burst int) *server.Guard {
	t.Helper()
	keys, err := callers.NewJWKS(context.Background(), i.jwks, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close(context.Background()) })
	v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := callers.NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Per-caller rates of cfg apply; burst > 0 limits everyone else, at a
	// rate so slow that no token comes back during the test.
	spec := callers.RateSpec{}
	if burst > 0 {
		spec = callers.RateSpec{PerSecond: 0.001, Burst: burst}
	}
	l, err := callers.NewRateLimiter(spec)
	if err != nil {
		t.Fatal(err)
	}
	gc := server.GuardConfig{JWT: v, Authorizer: a, RateLimiter: l}
	g, err := server.NewGuard(gc)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
