package gateway_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

const (
	testIssuer   = "https://auth.chaperone.test"
	testAudience = "https://fhir.chaperone.test"
)

// keys signs end-user tokens with an RSA, an EC and an Ed25519 key, all
// published in a JWKS file.
type keys struct {
	rsa, ec, ed jwk.Key
	hmac        []byte
	jwks        string
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, dk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &keys{hmac: []byte("a shared secret of at least 32 bytes!!")}
	set := jwk.NewSet()
	for i, raw := range []crypto.Signer{rk, ek, dk} {
		priv, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		_ = priv.Set(jwk.KeyIDKey, []string{"rsa", "ec", "ed"}[i])
		pub, err := jwk.PublicKeyOf(priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(pub); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			k.rsa = priv
		case 1:
			k.ec = priv
		default:
			k.ed = priv
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	k.jwks = filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(k.jwks, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// claims of a clinician of Organization/o1, valid for an hour.
func clinician() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "u1",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"fhirUser": "Practitioner/p1", "roles": "clinician", "org": "Organization/o1",
		"scope": "user/*.rs", "client_id": "app1",
	}
}

// sign signs claims with alg ("RS256", "ES256", "EdDSA", "HS256", "none").
func (k *keys) sign(t testing.TB, alg string, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for n, v := range claims {
		if n == "iat" || n == "exp" || n == "nbf" {
			v = time.Unix(v.(int64), 0)
		}
		if err := tok.Set(n, v); err != nil {
			t.Fatal(err)
		}
	}
	var opt jwt.SignEncryptParseOption
	switch alg {
	case "RS256":
		opt = jwt.WithKey(jwa.RS256(), k.rsa)
	case "ES256":
		opt = jwt.WithKey(jwa.ES256(), k.ec)
	case "EdDSA":
		opt = jwt.WithKey(jwa.EdDSA(), k.ed)
	case "HS256":
		opt = jwt.WithKey(jwa.HS256(), k.hmac)
	case "none":
		// An unsigned token: header {"alg":"none"}, no signature.
		b, err := json.Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		return b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(string(b)) + "."
	default:
		t.Fatalf("alg %q", alg)
	}
	b, err := jwt.Sign(tok, opt)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// config is a gateway file for the keys.
func (k *keys) config(phase string) string {
	return strings.ReplaceAll(`fhirBase: /fhir
tokens:
  jwks: JWKS
  issuer: `+testIssuer+`
  audience: `+testAudience+`
claims:
  id: fhirUser
  kind: kind
  roles: roles
  organization: org
  scopes: scope
  clientId: client_id
  launchPatient: patient
purposeOfUse:
  header: X-Purpose-Of-Use
  default: TREAT
resourcePhase: `+phase+"\n", "JWKS", k.jwks)
}

func (k *keys) gateway(t testing.TB, phase string) *gateway.Gateway {
	t.Helper()
	cfg, err := gateway.Parse([]byte(k.config(phase)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g
}

type noConsents = testkit.NoConsents

type record = testkit.Record

type recorder = testkit.Recorder

// serve starts a real server on a loopback port with the door of g in
// front of the reference bundle.
func serve(t *testing.T, g *gateway.Gateway, extra ...server.Option) (string, *recorder) {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	rec := &recorder{}
	door := func(s *server.Server) []server.Route {
		d := gateway.NewDoor(g, s, nil)
		return []server.Route{{Pattern: d.Pattern(), Procedure: gateway.ForwardProcedure, Handler: d, EndUserToken: true}}
	}
	opts := append([]server.Option{server.WithRecorder(rec), server.WithDoor(door)}, extra...)
	hs := server.New(eng, v, opts...).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String(), rec
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func forward(t *testing.T, url string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+gateway.ForwardPath, nil)
	if err != nil {
		t.Fatal(err)
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
