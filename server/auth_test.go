package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

const (
	testIssuer   = "https://idp.chaperone.test"
	testAudience = "chaperone"
)

// signer is a token signing key of a test issuer.
type signer struct {
	kid  string
	priv jwk.Key
	pub  jwk.Key
}

func newSigner(t testing.TB, kid string) *signer {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := priv.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if err := priv.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, priv: priv, pub: pub}
}

// claims of a token; zero fields get working defaults.
type claims struct {
	sub, iss, clientID string
	aud                []string
	exp, nbf           time.Time
	noExp              bool
	emptySub           bool // sign "sub":"" (sub is otherwise defaulted)
}

func (s *signer) sign(t testing.TB, c claims) string {
	t.Helper()
	now := time.Now()
	if c.sub == "" {
		c.sub = "svc-gateway"
	}
	if c.iss == "" {
		c.iss = testIssuer
	}
	if c.aud == nil {
		c.aud = []string{testAudience}
	}
	if c.exp.IsZero() {
		c.exp = now.Add(time.Hour)
	}
	if c.emptySub {
		c.sub = ""
	}
	b := jwt.NewBuilder().Subject(c.sub).Issuer(c.iss).Audience(c.aud).IssuedAt(now.Add(-time.Minute))
	if !c.noExp {
		b = b.Expiration(c.exp)
	}
	if !c.nbf.IsZero() {
		b = b.NotBefore(c.nbf)
	}
	if c.clientID != "" {
		b = b.Claim("client_id", c.clientID)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), s.priv))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func jwksJSON(t testing.TB, signers ...*signer) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, s := range signers {
		if err := set.AddKey(s.pub); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a key set that tests can swap, on loopback, and counts
// fetches.
type jwksServer struct {
	url     string
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	js := &jwksServer{}
	js.body.Store(&body)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		js.fetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(*js.body.Load())
	}))
	t.Cleanup(ts.Close)
	js.url = ts.URL
	return js
}

func (js *jwksServer) set(b []byte) { js.body.Store(&b) }

func newVerifier(t testing.TB, source string, minRefresh time.Duration) *callers.JWTVerifier {
	t.Helper()
	return newVerifierAt(t, source, minRefresh, nil)
}

// newVerifierAt verifies at the clock now (nil: the real one).
func newVerifierAt(t testing.TB, source string, minRefresh time.Duration, now func() time.Time) *callers.JWTVerifier {
	t.Helper()
	keys, err := callers.NewJWKS(context.Background(), source, callers.JWKSConfig{MinRefresh: minRefresh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close(context.Background()) })
	v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}, Skew: 5 * time.Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// unsignedToken is a token with "alg": "none".
func unsignedToken(kid string) string {
	h := b64([]byte(`{"alg":"none","typ":"JWT","kid":"` + kid + `"}`))
	p := b64([]byte(`{"sub":"svc-gateway","iss":"` + testIssuer + `","aud":"` + testAudience + `","exp":` + jsonTime(time.Now().Add(time.Hour)) + `}`))
	return h + "." + p + "."
}

// hmacToken is an HS256 token keyed with the issuer's public key: the
// classic algorithm confusion attack.
func hmacToken(t testing.TB, s *signer) string {
	t.Helper()
	var raw ecdsa.PublicKey
	if err := jwk.Export(s.pub, &raw); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&raw)
	if err != nil {
		t.Fatal(err)
	}
	h := b64([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + s.kid + `"}`))
	p := b64([]byte(`{"sub":"svc-gateway","iss":"` + testIssuer + `","aud":"` + testAudience + `","exp":` + jsonTime(time.Now().Add(time.Hour)) + `}`))
	m := hmac.New(sha256.New, der)
	io.WriteString(m, h+"."+p)
	return h + "." + p + "." + b64(m.Sum(nil))
}

func jsonTime(t time.Time) string {
	b, _ := json.Marshal(t.Unix())
	return string(b)
}

func TestJWTCallers(t *testing.T) {
	t.Parallel()
	issuerKey, otherKey := newSigner(t, "k1"), newSigner(t, "k1") // same kid, different key
	js := newJWKSServer(t, jwksJSON(t, issuerKey))
	// The verifier's clock stands at the test's start, so "within skew"
	// stays within it however long a loaded machine takes.
	now := time.Now()
	g := startGuarded(t, server.GuardConfig{JWT: newVerifierAt(t, js.url, time.Hour, func() time.Time { return now })}, nil)
	client := chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second}, g.base)

	var tokens []string
	cases := []struct {
		name       string
		token      string // "" sends no Authorization header
		wantReason string // "" means the call succeeds
	}{
		{name: "valid", token: issuerKey.sign(t, claims{})},
		{name: "valid within skew", token: issuerKey.sign(t, claims{exp: now.Add(-2 * time.Second)})},
		{name: "no token", wantReason: callers.ReasonMissingToken},
		{name: "expired", token: issuerKey.sign(t, claims{exp: now.Add(-time.Minute)}), wantReason: callers.ReasonExpired},
		{name: "not yet valid", token: issuerKey.sign(t, claims{nbf: now.Add(time.Minute)}), wantReason: callers.ReasonNotYetValid},
		{name: "wrong audience", token: issuerKey.sign(t, claims{aud: []string{"someone-else"}}), wantReason: callers.ReasonAudience},
		{name: "wrong issuer", token: issuerKey.sign(t, claims{iss: "https://evil.test"}), wantReason: callers.ReasonIssuer},
		{name: "no expiry", token: issuerKey.sign(t, claims{noExp: true}), wantReason: callers.ReasonMissingClaim},
		{name: "empty subject", token: issuerKey.sign(t, claims{emptySub: true}), wantReason: callers.ReasonMissingClaim},
		{name: "wrong key", token: otherKey.sign(t, claims{}), wantReason: callers.ReasonSignature},
		{name: "unknown kid", token: newSigner(t, "k9").sign(t, claims{}), wantReason: callers.ReasonUnknownKey},
		{name: "alg none", token: unsignedToken("k1"), wantReason: callers.ReasonAlgorithm},
		{name: "alg HS256 keyed with the public key", token: hmacToken(t, issuerKey), wantReason: callers.ReasonAlgorithm},
		{name: "malformed", token: "not.a-token", wantReason: callers.ReasonMalformed},
		{name: "tampered payload", token: tamper(issuerKey.sign(t, claims{})), wantReason: callers.ReasonSignature},
	}
	for _, tc := range cases {
		tokens = append(tokens, tc.token)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := connect.NewRequest(checkRequest(t))
			if tc.token != "" {
				req.Header().Set("Authorization", "Bearer "+tc.token)
			}
			_, err := client.Check(context.Background(), req)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeUnauthenticated {
				t.Fatalf("want unauthenticated, got %v", err)
			}
			if ce.Message() != tc.wantReason {
				t.Errorf("message %q, want %q", ce.Message(), tc.wantReason)
			}
		})
	}
	t.Cleanup(func() {
		logs := g.logs.String()
		for _, tok := range tokens {
			if tok != "" && strings.Contains(logs, tok) {
				t.Errorf("a bearer token was logged")
			}
		}
		for _, phi := range []string{"Patient/52", "10.1.2.3"} {
			if strings.Contains(logs, phi) {
				t.Errorf("log carries request content %q", phi)
			}
		}
		if !strings.Contains(logs, `"code":"unauthenticated"`) {
			t.Errorf("refusals not logged: %s", logs)
		}
	})
}

// tamper changes the subject in a signed token's payload.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = b64([]byte(strings.Replace(string(p), "svc-gateway", "svc-admin00", 1)))
	return strings.Join(parts, ".")
}

func TestJWTConfigErrors(t *testing.T) {
	t.Parallel()
	k1 := newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, k1))
	keys, err := callers.NewJWKS(context.Background(), js.url, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  callers.JWTConfig
	}{
		{"no issuer", callers.JWTConfig{Audience: []string{"a"}}},
		{"no audience", callers.JWTConfig{Issuer: "i"}},
		{"none", callers.JWTConfig{Issuer: "i", Audience: []string{"a"}, Algorithms: []string{"none"}}},
		{"HS256", callers.JWTConfig{Issuer: "i", Audience: []string{"a"}, Algorithms: []string{"HS256"}}},
		{"unknown", callers.JWTConfig{Issuer: "i", Audience: []string{"a"}, Algorithms: []string{"RS1"}}},
	} {
		if _, err := callers.NewJWTVerifier(keys, tc.cfg); err == nil {
			t.Errorf("%s: want an error", tc.name)
		}
	}
	for _, src := range []string{"http://idp.example.com/jwks.json", js.url + "/missing-but-served", "/nonexistent/jwks.json"} {
		if src == js.url+"/missing-but-served" {
			continue // the test server answers every path
		}
		if _, err := callers.NewJWKS(context.Background(), src, callers.JWKSConfig{}); err == nil {
			t.Errorf("NewJWKS(%q): want an error", src)
		}
	}
	sym := []byte(`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`)
	if _, err := callers.NewJWKS(context.Background(), writeFile(t, t.TempDir(), "sym.json", sym), callers.JWKSConfig{}); err == nil {
		t.Error("a JWKS with a symmetric key was accepted")
	}
}

// BenchmarkGuard measures what the guard adds to one request, on a handler
// that does nothing: auth=none is the bare handler, the others go through
// the guard (correlation id, authentication, authorization, rate limit,
// metrics). cache=hit is a caller that sends the same token every time (the
// JWKS and the verified token cached); cache=miss verifies the signature on
// every request.
func BenchmarkGuard(b *testing.B) {
	k1 := newSigner(b, "k1")
	path := writeFile(b, b.TempDir(), "jwks.json", jwksJSON(b, k1))
	keys, err := callers.NewJWKS(context.Background(), path, callers.JWKSConfig{})
	if err != nil {
		b.Fatal(err)
	}
	verifier := func(cacheSize int) *callers.JWTVerifier {
		v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}, CacheSize: cacheSize})
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	limiter, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: 1e9, Burst: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	ca := newCA(b, "ca")
	clientCert, _, _ := ca.issue(b, false, []string{"spiffe://chaperone.test/ns/ehr/sa/gateway"}, nil)
	leaf, _ := x509.ParseCertificate(clientCert.Certificate[0])
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

	tokA, tokB := k1.sign(b, claims{sub: "a"}), k1.sign(b, claims{sub: "b"})
	cases := []struct {
		name    string
		cfg     *server.GuardConfig
		tokens  []string
		mtls    bool
		metrics bool
	}{
		{name: "auth=none"},
		{name: "auth=anonymous", cfg: &server.GuardConfig{}},
		{name: "auth=jwt/cache=hit", cfg: &server.GuardConfig{JWT: verifier(0), RateLimiter: limiter}, tokens: []string{tokA}, metrics: true},
		{name: "auth=jwt/cache=miss", cfg: &server.GuardConfig{JWT: verifier(1), RateLimiter: limiter}, tokens: []string{tokA, tokB}, metrics: true},
		{name: "auth=mtls", cfg: &server.GuardConfig{MTLS: true, RateLimiter: limiter}, mtls: true, metrics: true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var h http.Handler = noop
			if tc.cfg != nil {
				cfg := *tc.cfg
				if tc.metrics {
					cfg.Metrics = server.NewMetrics()
				}
				g, err := server.NewGuard(cfg)
				if err != nil {
					b.Fatal(err)
				}
				h = g.Middleware(noop)
			}
			req := httptest.NewRequest(http.MethodPost, "/chaperone.v1.DecisionService/Check", nil)
			req.Header.Set("Content-Type", "application/proto")
			req.Header.Set(server.HeaderRequestID, "req-123")
			if tc.mtls {
				req.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
			}
			w := &discardWriter{h: http.Header{}}
			var hdrs [][]string
			for _, tok := range tc.tokens {
				hdrs = append(hdrs, []string{"Bearer " + tok})
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if len(hdrs) > 0 {
					req.Header["Authorization"] = hdrs[i%len(hdrs)]
					i++
				}
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
