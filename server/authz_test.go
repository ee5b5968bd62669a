package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/chaperone-pdp/chaperone/callers"
	_ "github.com/chaperone-pdp/chaperone/proto/chaperone/v1" // registers every chaperone.v1 service
	"github.com/chaperone-pdp/chaperone/server"
)

// apiProcedures lists "/pkg.Service/Method" for every method of every
// chaperone.v1 service linked into the binary, from the descriptors, so a
// service or method added later is covered by these tests unchanged.
func apiProcedures(t testing.TB) []string {
	t.Helper()
	var procs []string
	protoregistry.GlobalFiles.RangeFilesByPackage("chaperone.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				procs = append(procs, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	if len(procs) < 6 {
		t.Fatalf("only %d procedures found: %v", len(procs), procs)
	}
	return procs
}

func serviceOf(proc string) string { return strings.Split(proc, "/")[1] }

// authzCallers are the callers of the authorization tests, with the rule
// deciding which procedures each may call.
const authzCallersYAML = `
callers:
  - name: consent-writer
    subjects: [svc-consent]
    allow: [chaperone.v1.ConsentService]
  - name: put-only
    clients: [put-app]
    allow: [chaperone.v1.ConsentService/Put]
  - name: admin
    mtls: [spiffe://chaperone.test/ns/ops/sa/admin]
    allow: ["*"]
`

type authzCaller struct {
	name   string
	caller callers.Caller
	may    func(proc string) bool
}

func authzCallers() []authzCaller {
	decision := func(p string) bool { return serviceOf(p) == "chaperone.v1.DecisionService" }
	return []authzCaller{
		{"authenticated, no grant", callers.Caller{ID: "svc-x", Subject: "svc-x"}, decision},
		{"consent service granted", callers.Caller{ID: "svc-consent", Subject: "svc-consent"}, func(p string) bool {
			return decision(p) || serviceOf(p) == "chaperone.v1.ConsentService"
		}},
		{"one method granted by client id", callers.Caller{ID: "u", Subject: "u", ClientID: "put-app"}, func(p string) bool {
			return decision(p) || p == "/chaperone.v1.ConsentService/Put"
		}},
		{"everything granted by mTLS identity", callers.Caller{ID: "spiffe://chaperone.test/ns/ops/sa/admin", URIs: []string{"spiffe://chaperone.test/ns/ops/sa/admin"}}, func(string) bool { return true }},
		{"wrong identity kind does not match", callers.Caller{ID: "spiffe://chaperone.test/ns/ops/sa/admin", Subject: "spiffe://chaperone.test/ns/ops/sa/admin"}, decision},
		{"anonymous (no auth configured)", callers.Caller{ID: callers.AnonymousID, Anonymous: true}, func(string) bool { return true }},
	}
}

func loadAuthz(t testing.TB) *callers.Authorizer {
	t.Helper()
	cfg, err := callers.LoadAuthzConfig(writeFile(t, t.TempDir(), "callers.yaml", []byte(authzCallersYAML)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := callers.NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthorizeEveryProcedure(t *testing.T) {
	t.Parallel()
	a := loadAuthz(t)
	procs := append(apiProcedures(t),
		// Services announced in the design, whether or not linked yet.
		"/chaperone.v1.AccessService/Grant", "/chaperone.v1.AgreementService/Put", "/chaperone.v1.BundleService/Activate",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
	for _, c := range authzCallers() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range procs {
				want := c.may(p) || strings.HasPrefix(p, "/grpc.reflection.")
				err := a.Authorize(&c.caller, p)
				if got := err == nil; got != want {
					t.Errorf("%s: allowed = %v, want %v (%v)", p, got, want, err)
				}
				if err != nil && !strings.Contains(err.Error(), p) {
					t.Errorf("%s: error %q does not name the procedure", p, err)
				}
			}
		})
	}
	t.Run("paths that are not procedures are refused", func(t *testing.T) {
		t.Parallel()
		admin := callers.Caller{ID: "x", Subject: "svc-consent"}
		for _, p := range []string{"/chaperone.v1.DecisionService/../chaperone.v1.ConsentService/Put", "/chaperone.v1.ConsentService//Put", "/x", ""} {
			if a.Authorize(&admin, p) == nil {
				t.Errorf("%q allowed", p)
			}
		}
	})
}

// TestAuthorizeOverHTTP sends every procedure through a real server with
// tokens of each caller: refused ones get permission_denied, the others
// reach the service (or the mux, for services not mounted here).
func TestAuthorizeOverHTTP(t *testing.T) {
	t.Parallel()
	k := newSigner(t, "k1")
	v := newVerifier(t, writeFile(t, t.TempDir(), "jwks.json", jwksJSON(t, k)), time.Hour)
	g := startGuarded(t, server.GuardConfig{JWT: v, Authorizer: loadAuthz(t)}, nil)
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, c := range authzCallers() {
		if c.caller.Subject == "" || len(c.caller.URIs)+len(c.caller.DNSNames) > 0 {
			continue // token callers only here; mTLS identities are in TestMutualTLS
		}
		tok := k.sign(t, claims{sub: c.caller.Subject, clientID: c.caller.ClientID})
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range apiProcedures(t) {
				client := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, g.base+p)
				req := connect.NewRequest(&emptypb.Empty{})
				req.Header().Set("Authorization", "Bearer "+tok)
				_, err := client.CallUnary(context.Background(), req)
				denied := connect.CodeOf(err) == connect.CodePermissionDenied
				if denied == c.may(p) {
					t.Errorf("%s: %v, want allowed=%v", p, err, c.may(p))
				}
				if connect.CodeOf(err) == connect.CodeUnauthenticated {
					t.Errorf("%s: %v", p, err)
				}
			}
		})
	}
}

func TestAuthzConfigErrors(t *testing.T) {
	t.Parallel()
	for name, y := range map[string]string{
		"unknown key":      "callers:\n  - name: a\n    subjects: [s]\n    alow: ['*']\n",
		"no name":          "callers:\n  - subjects: [s]\n    allow: ['*']\n",
		"no identity":      "callers:\n  - name: a\n    allow: ['*']\n",
		"bad service":      "callers:\n  - name: a\n    subjects: [s]\n    allow: [ConsentService]\n",
		"bad method":       "callers:\n  - name: a\n    subjects: [s]\n    allow: [chaperone.v1.ConsentService/Put/x]\n",
		"negative rate":    "callers:\n  - name: a\n    subjects: [s]\n    allow: ['*']\n    rateLimit: {perSecond: -1}\n",
		"bad open pattern": "anyAuthenticated: ['chaperone.v1.*']\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := callers.LoadAuthzConfig(writeFile(t, t.TempDir(), "c.yaml", []byte(y)))
			if err == nil {
				_, err = callers.NewAuthorizer(cfg)
			}
			if err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
