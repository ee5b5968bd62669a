package extauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
)

type noConsents = testkit.NoConsents

type record = testkit.Record

type recorder = testkit.Recorder

// discard is a recorder that keeps nothing.
type discard struct{}

func (discard) Record(context.Context, string, *chaperonev1.CheckRequest, *chaperonev1.CheckResponse) error {
	return nil
}

// failHeader makes the door's mapper fail as a server-side fault would
// (a key set that cannot be read, say).
const failHeader = "x-test-mapper-fault"

// gatewayFile is the gateway file of the tests, end-user tokens signed by
// the issuer's key.
const gatewayFile = `fhirBase: /fhir
tokens:
  jwks: JWKS
  issuer: ` + testIssuer + `
  audience: ` + fhirAudience + `
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
resourcePhase: PHASE
`

// gateway is the gateway of the gateway file with resourcePhase phase.
func (i *issuer) gateway(t testing.TB, phase string) *gateway.Gateway {
	t.Helper()
	cfg, err := gateway.Parse([]byte(strings.NewReplacer("JWKS", i.jwks, "PHASE", phase).Replace(gatewayFile)))
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

// mapper is the door's mapper of the gateway file with resourcePhase
// phase, failing on failHeader.
func (i *issuer) mapper(t testing.TB, phase string) extauthz.Mapper {
	t.Helper()
	m := extauthz.FromGateway(i.gateway(t, phase))
	return extauthz.MapperFunc(func(ctx context.Context, r *extauthz.Request) (*extauthz.Mapped, error) {
		if r.Header.Get(failHeader) != "" {
			return nil, errors.New("key set unreachable")
		}
		return m.Map(ctx, r)
	})
}

// endUser is an end user's bearer token: a practitioner of
// Organization/o1 with role.
func (i *issuer) endUser(t testing.TB, id, role string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewBuilder().Subject("u-"+role).Issuer(testIssuer).Audience([]string{fhirAudience}).
		IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).
		Claim("fhirUser", id).Claim("roles", role).Claim("org", "Organization/o1").Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), i.priv))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + string(signed)
}

// testServer is a real server on a loopback port with the door.
type testServer struct {
	addr     string
	recorder *recorder
}

// start serves the reference bundle with the door mapping with m, behind
// guard (nil: none).
func start(t *testing.T, m extauthz.Mapper, guard *server.Guard) *testServer {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	rec := &recorder{}
	door := func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
		return extauthz.New(m, s, nil).Handler
	}
	opts := []server.Option{server.WithRecorder(rec), server.WithGRPCDoor(extauthz.Service, door)}
	if guard != nil {
		opts = append(opts, server.WithMiddleware(guard.Middleware), server.WithHandlerOptions(guard.HandlerOptions()...))
	}
	srv := server.New(eng, v, opts...)
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As chaperone serve does: gRPC over h2c on the server's own HTTP/2 server.
	done := make(chan error, 1)
	go func() { done <- srv.ServeH2C(hs, ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = srv.Shutdown(ctx, hs)
		_ = hs.Close()
		<-done
	})
	return &testServer{addr: ln.Addr().String(), recorder: rec}
}

// conn is a grpc-go client connection to ts over h2c, as Envoy's.
func (ts *testServer) conn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// check sends Envoy's CheckRequest for an HTTP request; token, when not
// empty, is the calling gateway's own token.
func (ts *testServer) check(t *testing.T, token, method, path string, headers map[string]string, body string) (*authv3.CheckResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/app/sa/web"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: headers, Body: body, Host: "fhir.example.org", Scheme: "https",
		}},
	}}
	return authv3.NewAuthorizationClient(ts.conn(t)).Check(ctx, req)
}

// Tokens of the calling gateway, for the guard.
const (
	testIssuer   = "https://idp.chaperone.test"
	testAudience = "chaperone"
	fhirAudience = "https://fhir.chaperone.test"
)

type issuer struct {
	priv jwk.Key
	jwks string
}

func newIssuer(t testing.TB) *issuer {
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

func (i *issuer) token(t testing.TB, sub string) string {
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

// guard authenticates tokens of i and authorizes by cfg.
func (i *issuer) guard(t *testing.T, cfg callers.AuthzConfig) *server.Guard {
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
	g, err := server.NewGuard(server.GuardConfig{JWT: v, Authorizer: a})
	if err != nil {
		t.Fatal(err)
	}
	return g
}
