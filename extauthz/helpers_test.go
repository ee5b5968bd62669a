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
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/fhirrest"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// noConsents is a consent layer for a store without any consent.
type noConsents struct{}

func (noConsents) EvaluateConsent(context.Context, *chaperonev1.CheckRequest, time.Time, consent.Rule) (engine.ConsentResult, error) {
	return engine.ConsentResult{Decision: engine.ConsentNoConsent}, nil
}

// record is one audit record a test server took.
type record struct {
	caller string
	req    *chaperonev1.CheckRequest
	resp   *chaperonev1.CheckResponse
}

type recorder struct {
	mu      sync.Mutex
	records []record
}

func (r *recorder) Record(_ context.Context, caller string, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, record{caller, req, resp})
	return nil
}

func (r *recorder) all() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]record(nil), r.records...)
}

// endUsers are the end users of the test mapper, by bearer token.
var endUsers = map[string]*chaperonev1.Subject{
	"clinician": {Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
	"nurse":     {Id: "Practitioner/n1", Kind: "practitioner", Roles: []string{"nurse"}, Organization: "Organization/o1"},
}

// failHeader makes the test mapper fail as a server-side fault would.
const failHeader = "x-test-mapper-fault"

// testMapper maps with fhirrest under /fhir; the end user is the bearer
// token's entry in endUsers (401 otherwise), the purpose the
// x-purpose-of-use header or TREAT.
func testMapper(t *testing.T) extauthz.Mapper {
	t.Helper()
	fm, err := fhirrest.New("/fhir")
	if err != nil {
		t.Fatal(err)
	}
	return extauthz.MapperFunc(func(_ context.Context, r *extauthz.Request) (*extauthz.Mapped, error) {
		if r.Header.Get(failHeader) != "" {
			return nil, errors.New("key set unreachable")
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		subject := endUsers[tok]
		if !ok || subject == nil {
			return nil, &extauthz.Refusal{Status: http.StatusUnauthorized, Code: "UNAUTHENTICATED"}
		}
		path, query, _ := strings.Cut(r.URI, "?")
		m, err := fm.Map(r.Method, path, query, r.Body)
		if err != nil {
			var re *fhirrest.RefusedError
			if errors.As(err, &re) {
				return nil, &extauthz.Refusal{Status: http.StatusForbidden, Code: string(re.Reason), Err: err}
			}
			return nil, err
		}
		purpose := r.Header.Get("X-Purpose-Of-Use")
		if purpose == "" {
			purpose = "TREAT"
		}
		return &extauthz.Mapped{Check: &chaperonev1.CheckRequest{
			Subject:      subject,
			Action:       string(m.Action),
			Resource:     &chaperonev1.Resource{Type: m.Type, Id: m.ID, Patient: m.Patient},
			PurposeOfUse: purpose,
			Context:      &chaperonev1.Context{Phase: "request", NetworkZone: "clinic", DeviceTrust: "managed"},
		}}, nil
	})
}

// testServer is a real server on a loopback port with the door.
type testServer struct {
	addr     string
	recorder *recorder
}

// start serves the reference bundle with the door behind guard (nil: none).
func start(t *testing.T, guard *server.Guard) *testServer {
	t.Helper()
	eng := engine.New(noConsents{})
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
	var srv *server.Server
	door := extauthz.New(testMapper(t), deciderFunc(func(ctx context.Context, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error) {
		return srv.Decide(ctx, req, amend)
	}), nil)
	opts := []server.Option{server.WithRecorder(rec), server.WithService(extauthz.Service, door.Handler)}
	if guard != nil {
		opts = append(opts, server.WithMiddleware(guard.Middleware), server.WithHandlerOptions(guard.HandlerOptions()...))
	}
	srv = server.New(eng, v, opts...)
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &testServer{addr: ln.Addr().String(), recorder: rec}
}

type deciderFunc func(context.Context, *chaperonev1.CheckRequest, func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error)

func (f deciderFunc) Decide(ctx context.Context, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error) {
	return f(ctx, req, amend)
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
)

type issuer struct {
	priv jwk.Key
	jwks string
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
