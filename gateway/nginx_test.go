package gateway_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/server"
)

// nginxConf puts nginx's auth_request in front of an upstream: every
// request under /fhir/ is first asked of Chaperone's forward-auth door,
// and an allowed one is forwarded with the decision headers.
const nginxConf = `daemon off;
master_process off;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {{DIR}}/body;
  proxy_temp_path {{DIR}}/proxy;
  fastcgi_temp_path {{DIR}}/fastcgi;
  uwsgi_temp_path {{DIR}}/uwsgi;
  scgi_temp_path {{DIR}}/scgi;
  server {
    listen 127.0.0.1:{{PORT}};
    location /fhir/ {
      auth_request /_chaperone;
      auth_request_set $chaperone_decision $upstream_http_x_chaperone_decision_id;
      auth_request_set $chaperone_obligations $upstream_http_x_chaperone_obligations;
      proxy_set_header X-Chaperone-Decision-Id $chaperone_decision;
      proxy_set_header X-Chaperone-Obligations $chaperone_obligations;
      proxy_pass http://{{UPSTREAM}};
    }
    location = /_chaperone {
      internal;
      proxy_pass http://{{CHAPERONE}}/authz/forward;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Chaperone-Authorization "Bearer {{GATEWAY_TOKEN}}";
    }
  }
}
`

// nginxBinary finds nginx; the test is skipped without it, unless CI is
// "true", where every test must run.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx not found (required when CI=true; test/deps.sh installs it)")
	}
	t.Skip("nginx not found; test/deps.sh installs it")
	return ""
}

// seen records what reached the upstream.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *seen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(r.Context()))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	_, _ = w.Write([]byte(`{"resourceType":"Observation","id":"x1"}`))
}

func (s *seen) all() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// startNginx runs nginx with conf on a free loopback port until the test
// ends and returns its base URL.
func startNginx(t *testing.T, bin, conf string) string {
	t.Helper()
	var lastErr error
	for range 3 { // a free port can be taken between probing and binding
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		dir := t.TempDir()
		path := filepath.Join(dir, "nginx.conf")
		c := strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", fmt.Sprint(port)).Replace(conf)
		if err := os.WriteFile(path, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-done:
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				lastErr = fmt.Errorf("nginx exited: %v: %s%s", err, out.String(), log)
			default:
			}
			if lastErr != nil {
				break
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				t.Cleanup(func() {
					_ = cmd.Process.Signal(syscall.SIGQUIT)
					select {
					case <-done:
					case <-time.After(5 * time.Second):
						_ = cmd.Process.Kill()
						<-done
					}
				})
				return "http://" + addr
			}
			time.Sleep(20 * time.Millisecond) // waiting for another process to bind
		}
		if lastErr == nil {
			_ = cmd.Process.Kill()
			<-done
			lastErr = fmt.Errorf("nginx did not listen on %s: %s", addr, out.String())
		}
	}
	t.Fatal(lastErr)
	return ""
}

// TestNginxAuthRequest puts a real nginx with auth_request in front of a
// small upstream: an allowed FHIR read reaches the upstream with the
// decision headers; a denied, unauthenticated or unmappable one does not.
func TestNginxAuthRequest(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	k := newKeys(t)
	chaperone, rec := serve(t, k.gateway(t, gateway.PhaseProxy), server.WithMiddleware(k.guard(t).Middleware))
	up := &seen{}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := &http.Server{Handler: up, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = us.Serve(uln) }()
	t.Cleanup(func() { _ = us.Close() })
	conf := strings.NewReplacer(
		"{{UPSTREAM}}", uln.Addr().String(),
		"{{CHAPERONE}}", strings.TrimPrefix(chaperone, "http://"),
		"{{GATEWAY_TOKEN}}", k.callerToken(t, "gw"),
	).Replace(nginxConf)
	base := startNginx(t, bin, conf)

	c := clinician()
	delete(c, "client_id")
	nurse := clinician()
	nurse["fhirUser"], nurse["roles"] = "Practitioner/n1", "nurse"
	delete(nurse, "client_id")
	user, nurseTok := "Bearer "+k.sign(t, "ES256", c), "Bearer "+k.sign(t, "ES256", nurse)
	tests := []struct {
		name    string
		method  string
		path    string
		header  map[string]string
		status  int
		reaches bool
	}{
		{"an allowed read", "GET", "/fhir/Observation/x1", map[string]string{"Authorization": user}, 200, true},
		{"an allowed read with forged decision headers", "GET", "/fhir/Observation/x1", map[string]string{"Authorization": user, gateway.HeaderDecisionID: "forged", gateway.HeaderObligations: "e30"}, 200, true},
		{"a denied read", "GET", "/fhir/DocumentReference/doc-1", map[string]string{"Authorization": nurseTok}, 403, false},
		{"no token", "GET", "/fhir/Observation/x1", nil, 401, false},
		{"an encoded slash", "GET", "/fhir/Observation/x%2F1", map[string]string{"Authorization": user}, 403, false},
		{"a method override", "GET", "/fhir/Observation/x1", map[string]string{"Authorization": user, "X-HTTP-Method-Override": "DELETE"}, 403, false},
		{"the client's own caller token does not replace the gateway's", "GET", "/fhir/DocumentReference/doc-1", map[string]string{"Authorization": nurseTok, server.HeaderCallerAuthorization: "Bearer x"}, 403, false},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, recs := len(up.all()), len(rec.All())
			req, err := http.NewRequest(tt.method, base+tt.path, nil)
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
			_ = resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			got := up.all()[before:]
			if !tt.reaches {
				if len(got) != 0 {
					t.Fatalf("%d requests reached the upstream", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d requests reached the upstream, want 1", len(got))
			}
			r := got[0]
			if r.URL.Path != tt.path {
				t.Fatalf("upstream got %s", r.URL.Path)
			}
			newRecs := rec.All()[recs:]
			if len(newRecs) != 1 || newRecs[0].Caller != "gw" {
				t.Fatalf("%d audit records", len(newRecs))
			}
			if id := r.Header.Get(gateway.HeaderDecisionID); id == "" || id != newRecs[0].Resp.GetDecisionId() {
				t.Fatalf("upstream decision id %q, recorded %q", id, newRecs[0].Resp.GetDecisionId())
			}
			raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get(gateway.HeaderObligations))
			if err != nil {
				t.Fatal(err)
			}
			var obl map[string]any
			if err := json.Unmarshal(raw, &obl); err != nil || obl["perEntryCheck"] != true {
				t.Fatalf("upstream obligations %s (%v)", raw, err)
			}
		})
	}
}
