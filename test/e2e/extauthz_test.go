package e2e_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// serveGateway runs `chaperone serve --gateway FILE args...` with a gateway
// file trusting a key of its own, and returns the process, its base URL and
// a clinician's end-user token ("Bearer …") signed with that key.
func serveGateway(t testing.TB, args ...string) (*exec.Cmd, string, string) {
	t.Helper()
	return serveGatewayWith(t, "", args...)
}

// serveGatewayWith is serveGateway with extra lines at the end of the
// gateway file.
func serveGatewayWith(t testing.TB, extra string, args ...string) (*exec.Cmd, string, string) {
	t.Helper()
	dir := t.TempDir()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, "u1")
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
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("keys.json", string(b))
	gw := write("gateway.yaml", `fhirBase: /fhir
tokens:
  jwks: keys.json
  issuer: https://auth.e2e.test
  audience: https://fhir.e2e.test
claims:
  id: fhirUser
  roles: roles
  organization: org
purposeOfUse:
  header: X-Purpose-Of-Use
  default: TREAT
resourcePhase: proxy
`+extra)
	now := time.Now()
	tok, err := jwt.NewBuilder().Subject("u1").Issuer("https://auth.e2e.test").Audience([]string{"https://fhir.e2e.test"}).
		IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).
		Claim("fhirUser", "Practitioner/p1").Claim("roles", "clinician").Claim("org", "Organization/o1").Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), priv))
	if err != nil {
		t.Fatal(err)
	}
	cmd, base := startServe(t, append([]string{"--gateway", gw}, args...)...)
	return cmd, base, "Bearer " + string(signed)
}

// TestServeEnvoyExtAuthz runs `serve --gateway FILE` and asks its ext_authz
// door as Envoy does (grpc-go over h2c with go-control-plane's messages):
// an allowed search, a denied read and an unmappable path, and finds the
// allowed decision in the audit log.
func TestServeEnvoyExtAuthz(t *testing.T) {
	t.Parallel()
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	_, base, token := serveGateway(t, "--audit-file", auditFile)

	cc, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	check := func(method, path string) *authv3.CheckResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Headers: map[string]string{"authorization": token},
			}},
		}})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp
	}
	header := func(hs []*corev3.HeaderValueOption, key string) string {
		for _, h := range hs {
			if h.GetHeader().GetKey() == key {
				return h.GetHeader().GetValue()
			}
		}
		return ""
	}

	allowed := check("GET", "/fhir/Observation?patient=Patient/51")
	id := header(allowed.GetOkResponse().GetHeaders(), "x-chaperone-decision-id")
	if allowed.GetStatus().GetCode() != 0 || id == "" {
		t.Fatalf("search: %v, want an allow with a decision id", allowed)
	}
	for _, path := range []string{"/fhir/Claim/c1", "/fhir/Observation/a%2Fb"} {
		denied := check("GET", path)
		if denied.GetStatus().GetCode() != 7 || denied.GetDeniedResponse().GetStatus().GetCode() != 403 {
			t.Errorf("%s: %v, want 7 and 403", path, denied)
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
