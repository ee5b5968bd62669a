package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestServeRevocableTokens runs `serve --redis --jwks --callers
// --require-jti --introspection-url --gateway` and revokes tokens with
// `chaperone tokens revoke`: through the server (--addr, recorded with the
// admin as the caller) and straight into Redis (--redis, recorded by the
// command in the server's audit file). The server refuses each revoked
// token within a second, refuses tokens without a jti and tokens the
// introspection endpoint calls inactive, and its audit log, which verifies,
// holds both revocations.
func TestServeRevocableTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	redisSrv := redistest.StartServer(t)
	redisURL := "redis://" + redisSrv.Addr() + "/0"
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, "k1")
	pub, _ := jwk.PublicKeyOf(priv)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, _ := json.Marshal(set)
	write("keys.json", string(b))
	const issuer = "https://auth.e2e.test"
	sign := func(sub, aud, jti string) string {
		t.Helper()
		now := time.Now()
		bld := jwt.NewBuilder().Subject(sub).Issuer(issuer).Audience([]string{aud}).IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).
			Claim("fhirUser", "Practitioner/p1").Claim("roles", "clinician").Claim("org", "Organization/o1")
		if jti != "" {
			bld = bld.JwtID(jti)
		}
		tok, err := bld.Build()
		if err != nil {
			t.Fatal(err)
		}
		s, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), priv))
		if err != nil {
			t.Fatal(err)
		}
		return string(s)
	}
	gw := write("gateway.yaml", `fhirBase: /fhir
tokens: {jwks: keys.json, issuer: `+issuer+`, audience: https://fhir.e2e.test}
claims: {id: fhirUser, roles: roles, organization: org}
purposeOfUse: {default: TREAT}
resourcePhase: proxy
`)
	callersFile := write("callers.yaml", `anyAuthenticated: [chaperone.v1.DecisionService, chaperone.gateway.v1.ForwardAuthService]
callers:
  - name: security
    subjects: [security-officer]
    allow: [chaperone.v1.AccessService/RevokeToken]
`)
	inactive := sign("edge", "chaperone", "svc-inactive")
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "chaperone" || secret != "s3cret" || r.ParseForm() != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"active": r.PostForm.Get("token") != inactive})
	}))
	t.Cleanup(idp.Close)
	secretFile := write("client-secret", "s3cret\n")
	auditFile := filepath.Join(dir, "audit.jsonl")
	cmd, base := startServe(t, "--redis", redisURL, "--jwks", filepath.Join(dir, "keys.json"), "--issuer", issuer, "--audience", "chaperone",
		"--callers", callersFile, "--require-jti", "--gateway", gw, "--audit-file", auditFile,
		"--introspection-url", idp.URL, "--introspection-client-id", "chaperone", "--introspection-client-secret-file", secretFile)

	hc := &http.Client{Timeout: 10 * time.Second}
	check := func(caller string) connect.Code {
		t.Helper()
		req := connect.NewRequest(&chaperonev1.CheckRequest{
			Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
			Action:       "read",
			Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/51", Organization: "Organization/o1"},
			PurposeOfUse: "TREAT",
		})
		req.Header().Set("Authorization", "Bearer "+caller)
		_, err := chaperonev1connect.NewDecisionServiceClient(hc, base).Check(context.Background(), req)
		if err == nil {
			return 0
		}
		return connect.CodeOf(err)
	}
	forward := func(caller, endUser string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/authz/forward", nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/fhir/Observation?patient=Patient/51")
		req.Header.Set("X-Chaperone-Authorization", "Bearer "+caller)
		req.Header.Set("Authorization", "Bearer "+endUser)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	svc, svcStolen := sign("edge", "chaperone", "svc-1"), sign("edge", "chaperone", "svc-2")
	user, userStolen := sign("u1", "https://fhir.e2e.test", "u-1"), sign("u1", "https://fhir.e2e.test", "u-2")
	for name, tc := range map[string]struct {
		caller string
		want   connect.Code
	}{
		"a caller token":                      {svc, 0},
		"the token about to be stolen":        {svcStolen, 0},
		"a caller token without jti":          {sign("edge", "chaperone", ""), connect.CodeUnauthenticated},
		"a token the issuer says is inactive": {inactive, connect.CodeUnauthenticated},
	} {
		if got := check(tc.caller); got != tc.want {
			t.Errorf("Check with %s: %v, want %v", name, got, tc.want)
		}
	}
	if got := forward(svc, userStolen); got == http.StatusUnauthorized {
		t.Fatalf("forward-auth before the revocation: 401")
	}
	if got := forward(svc, sign("u1", "https://fhir.e2e.test", "")); got != http.StatusUnauthorized {
		t.Errorf("forward-auth, end user's token without jti: %d, want 401", got)
	}

	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	chaperone := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("chaperone %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Through the server, by the token itself (its jti, until its exp).
	adminFile := write("admin.jwt", sign("security-officer", "chaperone", "admin-1"))
	stolenFile := write("stolen.jwt", svcStolen)
	out := chaperone("tokens", "revoke", "--addr", base, "--auth-token-file", adminFile, "--token-file", stolenFile)
	if !strings.Contains(out, "revoked jti svc-2") || !strings.Contains(out, "by security-officer") {
		t.Errorf("tokens revoke --addr: %s", out)
	}
	if got := check(svcStolen); got != connect.CodeUnauthenticated {
		t.Errorf("Check with the revoked caller token: %v, want unauthenticated", got)
	}
	// Straight into Redis: the server learns of it by pub/sub.
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	start := time.Now()
	out = chaperone("tokens", "revoke", "--redis", redisURL, "--jti", "u-2", "--until", until, "--audit-file", auditFile)
	if !strings.Contains(out, "revoked jti u-2") || !strings.Contains(out, "by local:") {
		t.Errorf("tokens revoke --redis: %s", out)
	}
	for forward(svc, userStolen) != http.StatusUnauthorized {
		if time.Since(start) > time.Second+200*time.Millisecond {
			t.Fatal("the revoked end-user token is still accepted a second after tokens revoke --redis")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("forward-auth refused the end user's token %s after tokens revoke --redis started", time.Since(start).Round(time.Millisecond))
	if got := forward(svc, user); got == http.StatusUnauthorized || check(svc) != 0 {
		t.Errorf("tokens nobody revoked: forward-auth %d", got)
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	_, _ = cmd.Process.Wait()
	if out, err := exec.Command(bin, "audit", "verify", auditFile).CombinedOutput(); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	out = chaperone("audit", "changes", "--file", auditFile)
	for _, want := range []string{"security-officer", "token jti svc-2", "token jti u-2", "local:"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit changes lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "token.revoke"); n != 2 {
		t.Errorf("audit changes: %d token.revoke rows, want 2:\n%s", n, out)
	}
}
