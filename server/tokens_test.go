package server_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// startRevoking serves AccessService with list as the revocation list
// (nil: none), its changes recorded in l, behind a guard of cfg; the
// access service's clock is now.
func startRevoking(t *testing.T, l *audit.Log, cfg server.GuardConfig, list access.Revocations, now func() time.Time) string {
	t.Helper()
	acc := access.NewMemory()
	eng := engine.New(engine.StoreConsents(consentstore.NewMemory()), engine.WithGrants(acc), engine.WithAgreements(acc))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	guard, err := server.NewGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := []server.AccessOption{server.WithAccessAudit(l), server.WithAccessClock(now)}
	if list != nil {
		opts = append(opts, server.WithRevocations(list))
	}
	hs := server.New(eng, v, server.WithRecorder(l),
		server.WithMiddleware(guard.Middleware), server.WithHandlerOptions(guard.HandlerOptions()...),
		server.WithAccessService(server.NewAccessService(acc, opts...)),
	).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	go hs.Serve(ln)
	return "http://" + ln.Addr().String()
}

// TestRevokeToken: RevokeToken refuses bad requests naming the field,
// needs a grant of the caller, puts the token on the list (the caller's
// own token is refused from then on) and records the revocation on the
// audit chain, before and after, with the revoking caller.
func TestRevokeToken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	list := access.NewMemory(access.WithMemoryClock(clock))
	idp := newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, idp))
	keys, err := callers.NewJWKS(context.Background(), js.url, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close(context.Background()) })
	verifier, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}, Revocations: list})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "security", Subjects: []string{"security-officer"}, Allow: []string{"chaperone.v1.AccessService/RevokeToken"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	base := startRevoking(t, l, server.GuardConfig{JWT: verifier, Authorizer: authz}, list, clock)
	officer := chaperonev1connect.NewAccessServiceClient(&http.Client{Transport: bearer(idp.sign(t, claims{sub: "security-officer"})), Timeout: 10 * time.Second}, base)
	other := chaperonev1connect.NewAccessServiceClient(&http.Client{Transport: bearer(idp.sign(t, claims{sub: "svc-gateway"})), Timeout: 10 * time.Second}, base)
	ctx := context.Background()
	hash := access.TokenSHA256("a.b.c")
	in := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }

	bad := []struct {
		name  string
		req   *chaperonev1.AccessServiceRevokeTokenRequest
		field string
	}{
		{"no jti nor hash", &chaperonev1.AccessServiceRevokeTokenRequest{Until: in(time.Hour)}, "jti"},
		{"both", &chaperonev1.AccessServiceRevokeTokenRequest{Jti: "j", TokenSha256: hash, Until: in(time.Hour)}, "jti"},
		{"no until", &chaperonev1.AccessServiceRevokeTokenRequest{Jti: "j"}, "until"},
		{"until in the past", &chaperonev1.AccessServiceRevokeTokenRequest{Jti: "j", Until: in(-time.Minute)}, "until"},
		{"until absurdly far", &chaperonev1.AccessServiceRevokeTokenRequest{Jti: "j", Until: in(access.MaxRevocation + time.Hour)}, "until"},
		{"hash not hex", &chaperonev1.AccessServiceRevokeTokenRequest{TokenSha256: strings.Repeat("z", 64), Until: in(time.Hour)}, "tokenSha256"},
		{"jti too long", &chaperonev1.AccessServiceRevokeTokenRequest{Jti: strings.Repeat("j", 257), Until: in(time.Hour)}, "jti"},
	}
	for _, tc := range bad {
		_, err := officer.RevokeToken(ctx, connect.NewRequest(tc.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want invalid_argument naming %s", tc.name, err, tc.field)
		}
	}
	if _, err := other.RevokeToken(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeTokenRequest{Jti: "j", Until: in(time.Hour)})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a caller without the grant: %v, want permission_denied", err)
	}

	resp, err := officer.RevokeToken(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeTokenRequest{Jti: "stolen-1", Until: in(time.Hour)}))
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Msg.GetRevocation(); r.GetJti() != "stolen-1" || r.GetRevokedBy() != "security-officer" || !r.GetUntil().AsTime().Equal(now.Add(time.Hour)) {
		t.Errorf("revocation %v", r)
	}
	if _, err := officer.RevokeToken(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeTokenRequest{TokenSha256: hash, Until: in(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ jti, sha string }{{"stolen-1", ""}, {"", hash}} {
		if got, _ := list.TokenRevoked(ctx, q.jti, q.sha); !got {
			t.Errorf("TokenRevoked(%q, %q) = false after RevokeToken", q.jti, q.sha)
		}
	}

	recs := readChain(t, l, path)
	var got []string
	for _, r := range recs {
		if r.Kind == audit.KindChange && r.Change.Action == audit.ChangeTokenRevoke {
			c := r.Change
			got = append(got, r.Caller+" "+c.JTI+c.TokenSHA256+" "+c.Outcome)
			if c.Expires == nil || !c.Expires.Equal(now.Add(time.Hour)) {
				t.Errorf("change %+v: until not recorded", c)
			}
		}
	}
	want := []string{"security-officer stolen-1 ", "security-officer stolen-1 applied", "security-officer " + hash + " ", "security-officer " + hash + " applied"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("token.revoke records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRevokeTokenWithoutList: a server without a revocation list answers
// unimplemented, and records nothing.
func TestRevokeTokenWithoutList(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	base := startRevoking(t, l, server.GuardConfig{}, nil, time.Now)
	c := chaperonev1connect.NewAccessServiceClient(http.DefaultClient, base)
	_, err = c.RevokeToken(context.Background(), connect.NewRequest(&chaperonev1.AccessServiceRevokeTokenRequest{Jti: "j", Until: timestamppb.New(time.Now().Add(time.Hour))}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("RevokeToken without a list: %v, want unimplemented", err)
	}
	for _, r := range readChain(t, l, path) {
		if r.Kind == audit.KindChange {
			t.Errorf("change recorded: %+v", r.Change)
		}
	}
}
