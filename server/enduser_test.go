package server_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

// TestEndUserTokenRoute: on a door route marked EndUserToken the guard
// takes the caller's token from X-Chaperone-Authorization and leaves
// Authorization (the end user's) alone; on any other route Authorization
// is the caller's.
func TestEndUserTokenRoute(t *testing.T) {
	t.Parallel()
	key := newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, key))
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{AnyAuthenticated: []string{"test.Door"}})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := server.NewGuard(server.GuardConfig{JWT: newVerifier(t, js.url, time.Hour), Authorizer: authz})
	if err != nil {
		t.Fatal(err)
	}
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	who := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, server.CallerName(r.Context()))
	})
	door := server.WithDoor(func(*server.Server) []server.Route {
		return []server.Route{
			{Pattern: "/forward", Procedure: "/test.Door/Forward", Handler: who, EndUserToken: true},
			{Pattern: "/plain", Procedure: "/test.Door/Plain", Handler: who},
		}
	})
	grant := server.WithMiddleware(guard.Middleware)
	hs := server.New(eng, v, door, grant).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	base := "http://" + ln.Addr().String()

	gateway := "Bearer " + key.sign(t, claims{sub: "edge"})
	endUser := "Bearer " + key.sign(t, claims{sub: "alice"})
	tests := []struct {
		name   string
		path   string
		header map[string]string
		status int
		caller string
	}{
		{"the caller's header on the end-user route", "/forward", map[string]string{server.HeaderCallerAuthorization: gateway, "Authorization": endUser}, 200, "edge"},
		{"an end user's token alone does not make a caller", "/forward", map[string]string{"Authorization": endUser}, 401, ""},
		{"a bad caller token is refused", "/forward", map[string]string{server.HeaderCallerAuthorization: "Bearer x.y.z", "Authorization": endUser}, 401, ""},
		{"Authorization is the caller's elsewhere", "/plain", map[string]string{"Authorization": gateway}, 200, "edge"},
		{"the caller header means nothing elsewhere", "/plain", map[string]string{server.HeaderCallerAuthorization: gateway}, 401, ""},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status == 200 && string(body) != tt.caller {
				t.Fatalf("caller %q, want %q", body, tt.caller)
			}
		})
	}
}
