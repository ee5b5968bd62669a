package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// startBrowserServer serves the reference bundle behind CORS for origins,
// the gRPC-Web text translation and a guard (loopback, unauthenticated),
// as serve installs them.
func startBrowserServer(t *testing.T, origins ...string) string {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	cors, err := server.NewCORS(origins)
	if err != nil {
		t.Fatal(err)
	}
	g, err := server.NewGuard(server.GuardConfig{LoopbackHosts: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(eng, v, server.WithMiddleware(cors.Middleware, server.GRPCWebText(0), g.Middleware),
		server.WithHandlerOptions(g.HandlerOptions()...))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"http://localhost:5173", true},
		{"https://console.example.org", true},
		{"https://console.example.org:8443", true},
		{"*", false},
		{"null", false},
		{"https://*.example.org", false},
		{"https://console.example.org/", false},
		{"https://console.example.org/app", false},
		{"HTTPS://Console.example.org", false},
		{"https://console.example.org:443", false},
		{"ftp://console.example.org", false},
		{"console.example.org", false},
		{"https://user@console.example.org", false},
	} {
		_, err := server.NewCORS([]string{tc.origin})
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, server.ErrCORSOrigin)) {
			t.Errorf("%q: err %v, want ok %v", tc.origin, err, tc.ok)
		}
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	allowed := "http://localhost:5173"
	base := startBrowserServer(t, allowed)
	check := func(origin string) *http.Request {
		body, _ := proto.Marshal(checkRequest(t))
		req, _ := http.NewRequest(http.MethodPost, base+"/chaperone.v1.DecisionService/Check", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/proto")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		return req
	}
	preflight := func(origin, method, headers string) *http.Request {
		req, _ := http.NewRequest(http.MethodOptions, base+"/chaperone.v1.DecisionService/Check", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		return req
	}
	tests := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantAllow  string // Access-Control-Allow-Origin
	}{
		{"preflight, allowed origin", preflight(allowed, "POST", "content-type,connect-protocol-version,authorization,x-grpc-web"), 204, allowed},
		{"preflight, other origin", preflight("http://localhost:5174", "POST", "content-type"), 403, ""},
		{"preflight, origin differing in scheme", preflight("https://localhost:5173", "POST", ""), 403, ""},
		{"preflight, method not served", preflight(allowed, "DELETE", ""), 403, ""},
		{"preflight, header not allowed", preflight(allowed, "POST", "content-type,x-evil"), 403, ""},
		{"request, allowed origin", check(allowed), 200, allowed},
		// Answered (a loopback origin passes the loopback guard), but
		// without a CORS header: the browser withholds the answer.
		{"request, other origin", check("http://localhost:5174"), 200, ""},
		{"request without origin", check(""), 200, ""},
	}
	for _, tc := range tests {
		resp, err := http.DefaultClient.Do(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != tc.wantStatus || h.Get("Access-Control-Allow-Origin") != tc.wantAllow {
			t.Errorf("%s: %d allow-origin %q, want %d %q", tc.name, resp.StatusCode, h.Get("Access-Control-Allow-Origin"), tc.wantStatus, tc.wantAllow)
		}
		if tc.req.Header.Get("Origin") != "" && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("%s: no Vary: Origin", tc.name)
		}
		if tc.wantAllow != "" {
			if h.Get("Access-Control-Allow-Credentials") != "true" {
				t.Errorf("%s: credentials not allowed", tc.name)
			}
			if tc.req.Method == http.MethodOptions && (!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Connect-Protocol-Version") || h.Get("Access-Control-Max-Age") == "") {
				t.Errorf("%s: preflight headers %v", tc.name, h)
			}
			if tc.req.Method == http.MethodPost && !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
				t.Errorf("%s: expose headers %q", tc.name, h.Get("Access-Control-Expose-Headers"))
			}
		}
	}
}

// grpcWebFrames splits a gRPC-Web body into its messages and trailers.
func grpcWebFrames(t *testing.T, body []byte) (msgs [][]byte, trailer string) {
	t.Helper()
	for len(body) > 0 {
		if len(body) < 5 {
			t.Fatalf("short frame %q", body)
		}
		flag, n := body[0], binary.BigEndian.Uint32(body[1:5])
		data := body[5 : 5+n]
		body = body[5+n:]
		if flag&0x80 != 0 {
			trailer += string(data)
		} else {
			msgs = append(msgs, data)
		}
	}
	return msgs, trailer
}

func frame(msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func TestGRPCWebText(t *testing.T) {
	t.Parallel()
	base := startBrowserServer(t)
	good, _ := proto.Marshal(checkRequest(t))
	bad := checkRequest(t)
	bad.Resource.Patient = "patient/52"
	badRaw, _ := proto.Marshal(bad)
	f := frame(good)
	enc := base64.StdEncoding.EncodeToString
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  string // grpc-status in the trailer (or header)
		wantMsg     bool
	}{
		{"one chunk", "application/grpc-web-text", enc(f), "0", true},
		{"+proto", "application/grpc-web-text+proto", enc(f), "0", true},
		// Chunks padded on their own, as a streaming client sends them.
		{"two padded chunks", "application/grpc-web-text", enc(f[:4]) + enc(f[4:]), "0", true},
		{"line breaks", "application/grpc-web-text", enc(f)[:8] + "\r\n" + enc(f)[8:], "0", true},
		{"invalid request", "application/grpc-web-text", enc(frame(badRaw)), "3", false},
		{"not base64", "application/grpc-web-text", "%%%%", "3", false},
		{"cut base64", "application/grpc-web-text", enc(f)[:len(enc(f))-3], "3", false},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodPost, base+"/chaperone.v1.DecisionService/Check", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		req.Header.Set("Accept", tc.contentType)
		req.Header.Set("X-Grpc-Web", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc-web-text") {
			t.Errorf("%s: %d %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"))
			continue
		}
		var msgs [][]byte
		trailer := ""
		if len(raw) > 0 {
			// The answer may come in chunks padded on their own (the
			// server flushes the message before the trailers).
			body, err := decodePaddedChunks(string(raw))
			if err != nil {
				t.Errorf("%s: answer is not base64: %q", tc.name, raw)
				continue
			}
			msgs, trailer = grpcWebFrames(t, body)
		}
		status := resp.Header.Get("Grpc-Status")
		if status == "" {
			for _, line := range strings.Split(trailer, "\r\n") {
				if v, ok := strings.CutPrefix(strings.ToLower(line), "grpc-status:"); ok {
					status = strings.TrimSpace(v)
				}
			}
		}
		if status != tc.wantStatus {
			t.Errorf("%s: grpc-status %q, want %s (trailer %q)", tc.name, status, tc.wantStatus, trailer)
		}
		if tc.wantMsg {
			var out chaperonev1.CheckResponse
			if len(msgs) != 1 || proto.Unmarshal(msgs[0], &out) != nil || out.GetDecision() == chaperonev1.Decision_DECISION_UNSPECIFIED {
				t.Errorf("%s: messages %d, decision %v", tc.name, len(msgs), out.GetDecision())
			}
		}
	}

	// Binary gRPC-Web passes untouched.
	req, _ := http.NewRequest(http.MethodPost, base+"/chaperone.v1.DecisionService/Check", bytes.NewReader(f))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if msgs, _ := grpcWebFrames(t, raw); resp.Header.Get("Content-Type") != "application/grpc-web+proto" || len(msgs) != 1 {
		t.Errorf("binary gRPC-Web: %q, %d messages", resp.Header.Get("Content-Type"), len(msgs))
	}
}

// decodePaddedChunks decodes base64 chunks each padded on its own, as a
// gRPC-Web text client does.
func decodePaddedChunks(s string) ([]byte, error) {
	var out []byte
	for s != "" {
		end := len(s)
		if i := strings.IndexByte(s, '='); i >= 0 {
			end = i
			for end < len(s) && s[end] == '=' {
				end++
			}
		}
		b, err := base64.StdEncoding.DecodeString(s[:end])
		if err != nil {
			return nil, err
		}
		out, s = append(out, b...), s[end:]
	}
	return out, nil
}

// TestSelfAuthorized: a path the guard leaves to its handler
// (GuardConfig.SelfAuthorized) is still authenticated, the handler's
// server.Authorize applies the callers file, and no spelling of a path
// outside the prefix escapes authorization.
func TestSelfAuthorized(t *testing.T) {
	t.Parallel()
	sgn := newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, sgn))
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "officer", Subjects: []string{"officer"}, Allow: []string{"chaperone.v1.ConsentService/List"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := server.NewGuard(server.GuardConfig{JWT: newVerifier(t, js.url, 0), Authorizer: authz, SelfAuthorized: []string{"/console/"}})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(noConsents{})
	v, _ := validation.New()
	var consentCalls atomic.Int64
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := server.Authorize(r.Context(), "/chaperone.v1.ConsentService/List"); err != nil {
			http.Error(w, "denied", http.StatusForbidden)
			return
		}
		w.Write([]byte("page"))
	})
	srv := server.New(eng, v, server.WithMiddleware(g.Middleware, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/chaperone.v1.ConsentService/") {
				consentCalls.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}), server.WithHandlerOptions(g.HandlerOptions()...),
		server.WithConsentService(server.NewConsentService(consentstore.NewMemory())),
		server.WithHTTPHandler("/console/", page))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	get := func(path, sub string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(`{"patient":"Patient/52"}`))
		req.Header.Set("Content-Type", "application/json")
		if sub != "" {
			req.Header.Set("Authorization", "Bearer "+sgn.sign(t, claims{sub: sub}))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, path, sub string
		want            int
	}{
		{"granted caller", "/console/page", "officer", 200},
		{"caller without the grant", "/console/page", "stranger", 403},
		{"no token", "/console/page", "", 401},
		{"dot-dot out of the prefix", "/console/../chaperone.v1.ConsentService/List", "stranger", 0},
		{"encoded dot-dot", "/console/%2e%2e/chaperone.v1.ConsentService/List", "stranger", 0},
		{"double slash", "/console//../chaperone.v1.ConsentService/List", "stranger", 0},
	} {
		got := get(tc.path, tc.sub)
		if tc.want != 0 && got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
		if tc.want == 0 && got == http.StatusOK {
			t.Errorf("%s: %d: a path outside the prefix was served", tc.name, got)
		}
	}
	if n := consentCalls.Load(); n != 0 {
		t.Errorf("ConsentService reached %d times by a caller without the grant", n)
	}
}

// TestCORSProperty: whatever Origin a request carries, the answer names
// it in Access-Control-Allow-Origin only when it is, byte for byte, one of
// the configured origins, and a preflight from any other origin is refused.
func TestCORSProperty(t *testing.T) {
	t.Parallel()
	allowed := []string{"https://console.example.org", "http://localhost:5173"}
	cors, err := server.NewCORS(allowed)
	if err != nil {
		t.Fatal(err)
	}
	h := cors.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	origin := rapid.OneOf(
		rapid.SampledFrom(allowed),
		// Near misses: case, ports, slashes, suffixes, prefixes.
		rapid.Custom(func(t *rapid.T) string {
			o := rapid.SampledFrom(allowed).Draw(t, "base")
			switch rapid.IntRange(0, 5).Draw(t, "edit") {
			case 0:
				return strings.ToUpper(o)
			case 1:
				return o + "/"
			case 2:
				return o + rapid.StringMatching(`[a-z.:0-9]{1,6}`).Draw(t, "suffix")
			case 3:
				return rapid.StringMatching(`[a-z]{1,5}\.`).Draw(t, "prefix") + o
			case 4:
				return strings.Replace(o, "://", "://"+rapid.StringMatching(`[a-z]{1,5}@`).Draw(t, "user"), 1)
			default:
				return o[:rapid.IntRange(0, len(o)-1).Draw(t, "cut")]
			}
		}),
		rapid.String(),
	)
	rapid.Check(t, func(rt *rapid.T) {
		o := origin.Draw(rt, "origin")
		preflight := rapid.Bool().Draw(rt, "preflight")
		req := httptest.NewRequest(http.MethodPost, "/chaperone.v1.DecisionService/Check", nil)
		if preflight {
			req.Method = http.MethodOptions
			req.Header.Set("Access-Control-Request-Method", "POST")
		}
		req.Header["Origin"] = []string{o}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		ok := o == allowed[0] || o == allowed[1]
		got := rec.Header().Get("Access-Control-Allow-Origin")
		if ok != (got != "") || (got != "" && got != o) {
			rt.Fatalf("origin %q: Allow-Origin %q", o, got)
		}
		if preflight && !ok && rec.Code != http.StatusForbidden {
			rt.Fatalf("preflight from %q answered %d", o, rec.Code)
		}
	})
}
