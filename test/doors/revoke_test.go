package doors_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/test/redistest"
	"github.com/chaperone-pdp/chaperone/validation"
)

// callerAudience is the audience of callers' tokens (the end users' is
// the FHIR server's, audience).
const callerAudience = "chaperone"

// replica is one server of a revocation test: every door behind a guard
// that verifies callers' tokens, the gateway doors verifying end users'
// tokens, both against the Redis revocation list.
type replica struct {
	base   string
	check  chaperonev1connect.DecisionServiceClient
	access chaperonev1connect.AccessServiceClient
	envoy  authv3.AuthorizationClient
}

func startRevocationReplica(t *testing.T, f *fixture, jwksFile, redisAddr string) replica {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := consentstore.NewRedis(rdb, consentstore.WithRedisPrefix("revoke"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for !store.Stats().Subscribed {
		if time.Now().After(deadline) {
			t.Fatal("no invalidation subscription within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	keys, err := callers.NewJWKS(ctx, jwksFile, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close(ctx) })
	v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: issuerURL, Audience: []string{callerAudience}, Revocations: store})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{
		AnyAuthenticated: []string{"chaperone.v1.DecisionService", authzen.Service, gateway.Service, extauthz.Service},
		Callers:          []callers.CallerGrant{{Name: "admin", Subjects: []string{"admin"}, Allow: []string{"chaperone.v1.AccessService/RevokeToken"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := server.NewGuard(server.GuardConfig{JWT: v, Authorizer: authz})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.Parse([]byte(strings.Replace(gatewayFile, "JWKS", jwksFile, 1)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(ctx, cfg, gateway.Options{Revocations: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(ctx) })
	eng := engine.New(testkit.NoConsents{})
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	val, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(eng, val, server.WithRecorder(f.rec),
		server.WithAccessService(server.NewAccessService(access.NewMemory(), server.WithRevocations(store))),
		server.WithDoor(func(s *server.Server) []server.Route {
			d := gateway.NewDoor(g, s, nil)
			routes := []server.Route{{Pattern: d.Pattern(), Procedure: gateway.ForwardProcedure, Handler: d, EndUserToken: true}}
			for _, r := range authzen.New(s).Routes() {
				routes = append(routes, server.Route{Pattern: r.Pattern, Procedure: r.Procedure, Handler: r.Handler, Batch: r.Batch})
			}
			return routes
		}),
		server.WithGRPCDoor(extauthz.Service, func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
			return extauthz.New(extauthz.FromGateway(g), s, nil).Handler
		}),
		server.WithMiddleware(guard.Middleware),
		server.WithHandlerOptions(guard.HandlerOptions()...),
	).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return replica{
		base:   "http://" + addr,
		check:  chaperonev1connect.NewDecisionServiceClient(f.client, "http://"+addr),
		access: chaperonev1connect.NewAccessServiceClient(f.client, "http://"+addr),
		envoy:  authv3.NewAuthorizationClient(cc),
	}
}

// signed is a token of the test issuer: sub, aud, and a jti ("" for none);
// an end user's token carries the claims the gateway file maps.
func (f *fixture) signed(t *testing.T, sub, aud, jti string) string {
	t.Helper()
	now := time.Now()
	b := jwt.NewBuilder().Subject(sub).Issuer(issuerURL).Audience([]string{aud}).IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).
		Claim("fhirUser", "Practitioner/p1").Claim("kind", "practitioner").Claim("roles", []string{"clinician"}).Claim("org", "Organization/o1")
	if jti != "" {
		b = b.JwtID(jti)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), f.priv))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// doorStatus is what a door answered a caller token and an end user's
// token: the HTTP status (for Connect, 401 for unauthenticated, 200 for
// any decision).
type doorStatus func(t *testing.T, r replica, caller, endUser string) int

func revocationDoors() map[string]doorStatus {
	return map[string]doorStatus{
		"Connect Check": func(t *testing.T, r replica, caller, _ string) int {
			req := connect.NewRequest(&chaperonev1.CheckRequest{
				Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
				Action:       "read",
				Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/51", Organization: "Organization/o1"},
				PurposeOfUse: "TREAT",
			})
			req.Header().Set("Authorization", "Bearer "+caller)
			_, err := r.check.Check(context.Background(), req)
			switch connect.CodeOf(err) {
			case connect.CodeUnauthenticated:
				return http.StatusUnauthorized
			case connect.CodeUnknown:
				if err == nil {
					return http.StatusOK
				}
			}
			t.Fatalf("Check: %v", err)
			return 0
		},
		"AuthZEN": func(t *testing.T, r replica, caller, _ string) int {
			body := `{"subject":{"type":"practitioner","id":"Practitioner/p1","properties":{"roles":["clinician"],"organization":"Organization/o1"}},` +
				`"action":{"name":"read"},"resource":{"type":"Observation","id":"o1","properties":{"patient":"Patient/51"}},"context":{"purposeOfUse":"TREAT"}}`
			req, _ := http.NewRequest(http.MethodPost, r.base+authzen.EvaluationPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+caller)
			return status(t, req)
		},
		"ext_authz": func(t *testing.T, r replica, caller, endUser string) int {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+caller)
			resp, err := r.envoy.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/fhir/Observation?patient=Patient/51",
					Headers: map[string]string{"authorization": "Bearer " + endUser, "x-purpose-of-use": "TREAT"}}},
			}})
			switch {
			case err != nil && connect.CodeOf(err) == connect.CodeUnauthenticated,
				err != nil && strings.Contains(err.Error(), "Unauthenticated"):
				return http.StatusUnauthorized
			case err != nil:
				t.Fatalf("ext_authz: %v", err)
			case resp.GetOkResponse() != nil:
				return http.StatusOK
			}
			return int(resp.GetDeniedResponse().GetStatus().GetCode())
		},
		"forward-auth": func(t *testing.T, r replica, caller, endUser string) int {
			req, _ := http.NewRequest(http.MethodGet, r.base+gateway.ForwardPath, nil)
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-URI", "/fhir/Observation?patient=Patient/51")
			req.Header.Set(server.HeaderCallerAuthorization, "Bearer "+caller)
			req.Header.Set("Authorization", "Bearer "+endUser)
			req.Header.Set("X-Purpose-Of-Use", "TREAT")
			return status(t, req)
		},
	}
}

func status(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestRevokedTokensEveryDoor: two replicas share a Redis revocation list.
// Tokens are first accepted at every door of replica B (so they sit in its
// verified-token caches and its revocation cache says "not revoked"); an
// admin then revokes, on replica A, a caller's token by jti, an end user's
// by jti and another end user's (without jti) by hash. Within a second
// every door of replica B refuses each of them with 401 (Connect
// unauthenticated), and still accepts the tokens nobody revoked.
func TestRevokedTokensEveryDoor(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	f := &fixture{rec: &testkit.Recorder{}, client: &http.Client{Timeout: 10 * time.Second}}
	jwksFile := f.newKey(t)
	a := startRevocationReplica(t, f, jwksFile, addr)
	b := startRevocationReplica(t, f, jwksFile, addr)

	admin := f.signed(t, "admin", callerAudience, "admin-1")
	svc, svcRevoked := f.signed(t, "edge", callerAudience, "svc-1"), f.signed(t, "edge", callerAudience, "svc-2")
	user, userRevoked, userNoJTI := f.signed(t, "u", audience, "u-1"), f.signed(t, "u", audience, "u-2"), f.signed(t, "u", audience, "")
	doors := revocationDoors()
	gatewayDoor := map[string]bool{"ext_authz": true, "forward-auth": true}

	type pair struct{ caller, endUser string }
	revoked := map[string]pair{"caller by jti": {svcRevoked, user}}
	for name, p := range map[string]pair{"end user by jti": {svc, userRevoked}, "end user by hash": {svc, userNoJTI}} {
		revoked[name] = p
	}
	for name, door := range doors {
		for what, p := range revoked {
			if !gatewayDoor[name] && what != "caller by jti" {
				continue
			}
			if got := door(t, b, p.caller, p.endUser); got == http.StatusUnauthorized {
				t.Fatalf("%s, %s, before the revocation: 401", name, what)
			}
		}
	}

	until := timestamppb.New(time.Now().Add(time.Hour))
	start := time.Now()
	for _, m := range []*chaperonev1.AccessServiceRevokeTokenRequest{
		{Jti: "svc-2", Until: until},
		{Jti: "u-2", Until: until},
		{TokenSha256: access.TokenSHA256(userNoJTI), Until: until},
	} {
		req := connect.NewRequest(m)
		req.Header().Set("Authorization", "Bearer "+admin)
		if _, err := a.access.RevokeToken(context.Background(), req); err != nil {
			t.Fatalf("RevokeToken %v: %v", m, err)
		}
	}
	// The first refusal on replica B bounds the propagation.
	deadline := start.Add(time.Second)
	for doors["Connect Check"](t, b, svcRevoked, user) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("replica B still accepts the revoked caller token a second after the revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("replica B refused the revoked token %s after the revocation", time.Since(start).Round(time.Millisecond))
	for name, door := range doors {
		for _, r := range []replica{a, b} {
			for what, p := range revoked {
				if !gatewayDoor[name] && what != "caller by jti" {
					continue
				}
				deadline := start.Add(time.Second)
				got := door(t, r, p.caller, p.endUser)
				for got != http.StatusUnauthorized && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
					got = door(t, r, p.caller, p.endUser)
				}
				if got != http.StatusUnauthorized {
					t.Errorf("%s on %s, %s revoked: %d, want 401", name, r.base, what, got)
				}
			}
			if got := door(t, r, svc, user); got == http.StatusUnauthorized {
				t.Errorf("%s on %s: tokens nobody revoked: 401", name, r.base)
			}
		}
	}
	// A caller without a grant of RevokeToken may not revoke.
	req := connect.NewRequest(&chaperonev1.AccessServiceRevokeTokenRequest{Jti: "svc-1", Until: until})
	req.Header().Set("Authorization", "Bearer "+svc)
	if _, err := a.access.RevokeToken(context.Background(), req); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("RevokeToken by a caller without the grant: %v, want permission_denied", err)
	}
}
