package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate for the SAN URIs and DNS names (and
// 127.0.0.1/::1 for server certificates), with its PEM encodings.
func (ca *testCA) issue(t testing.TB, serverCert bool, uris, dns []string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     dns,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if serverCert {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// guarded is a server behind a Guard on a loopback port.
type guarded struct {
	base    string
	metrics *server.Metrics
	logs    *syncBuffer
	reached sync.Map // X-Test-Case values of requests the HTTP handler saw
}

// testCaseHeader tags a request with the test case that sent it, so a test
// can assert on what reached the server rather than on transport errors.
const testCaseHeader = "X-Test-Case"

// record is the outermost middleware: it notes every tagged request that
// reached the HTTP handler, before any authentication.
func (g *guarded) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.Header.Get(testCaseHeader); c != "" {
			g.reached.Store(c, true)
		}
		next.ServeHTTP(w, r)
	})
}

// sawCase reports whether a request tagged with name reached the server.
func (g *guarded) sawCase(name string) bool {
	_, ok := g.reached.Load(name)
	return ok
}

// startGuarded serves the reference bundle, a stub ConsentService and
// /metrics behind a guard made from cfg, over TLS when tlsCfg is set.
func startGuarded(t testing.TB, cfg server.GuardConfig, tlsCfg *tls.Config) *guarded {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	g := &guarded{logs: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Metrics == nil {
		cfg.Metrics = server.NewMetrics()
	}
	g.metrics = cfg.Metrics
	cfg.Logger = logger
	guard, err := server.NewGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(eng, v,
		server.WithLogger(logger),
		server.WithMiddleware(g.record, guard.Middleware),
		server.WithHandlerOptions(guard.HandlerOptions()...),
		server.WithHandlerOptions(connect.WithReadMaxBytes(64<<10)),
		server.WithHTTPHandler("GET /metrics", cfg.Metrics.Handler()),
		server.WithService(chaperonev1connect.ConsentServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
			return chaperonev1connect.NewConsentServiceHandler(chaperonev1connect.UnimplementedConsentServiceHandler{}, opts...)
		}),
	)
	if tlsCfg == nil {
		g.base = serveSplit(t, srv)
		return g
	}
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsCfg != nil {
		server.EnableTLS(hs, tlsCfg)
		go hs.ServeTLS(ln, "", "")
		g.base = "https://" + ln.Addr().String()
	} else {
		go hs.Serve(ln)
		g.base = "http://" + ln.Addr().String()
	}
	t.Cleanup(func() { hs.Close() })
	return g
}

func checkRequest(t testing.TB) *chaperonev1.CheckRequest {
	t.Helper()
	req := &chaperonev1.CheckRequest{}
	if err := protojson.Unmarshal([]byte(pinnedRequest), req); err != nil {
		t.Fatal(err)
	}
	return req
}

// tlsClient trusts ca and presents cert (when not nil), over HTTP/2.
func tlsClient(ca *testCA, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	var p http.Protocols
	p.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Protocols: &p}, Timeout: 10 * time.Second}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, otherCA := newCA(t, "chaperone test CA"), newCA(t, "someone else's CA")
	_, srvCert, srvKey := ca.issue(t, true, nil, []string{"localhost"})
	clientCA := writeFile(t, dir, "client-ca.pem", ca.pem)
	tlsCfg, err := server.NewTLSConfig(server.TLSFiles{
		CertFile:     writeFile(t, dir, "server.pem", srvCert),
		KeyFile:      writeFile(t, dir, "server-key.pem", srvKey),
		ClientCAFile: clientCA,
	})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "consent-writer", MTLS: []string{"spiffe://chaperone.test/ns/consent/sa/importer"}, Allow: []string{"chaperone.v1.ConsentService"}},
		{Name: "dns-admin", MTLS: []string{"admin.chaperone.test"}, Allow: []string{"*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	g := startGuarded(t, server.GuardConfig{MTLS: true, Authorizer: authz}, tlsCfg)

	gateway, _, _ := ca.issue(t, false, []string{"spiffe://chaperone.test/ns/ehr/sa/gateway"}, nil)
	importer, _, _ := ca.issue(t, false, []string{"spiffe://chaperone.test/ns/consent/sa/importer"}, nil)
	dnsAdmin, _, _ := ca.issue(t, false, nil, []string{"admin.chaperone.test"})
	noSAN, _, _ := ca.issue(t, false, nil, nil)
	foreign, _, _ := otherCA.issue(t, false, []string{"spiffe://chaperone.test/ns/consent/sa/importer"}, nil)

	consentGet := func(ctx context.Context, c *http.Client, opts ...connect.ClientOption) error {
		_, err := chaperonev1connect.NewConsentServiceClient(c, g.base, opts...).Get(ctx, connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{Id: "c1"}))
		return err
	}
	check := func(ctx context.Context, c *http.Client, opts ...connect.ClientOption) error {
		_, err := chaperonev1connect.NewDecisionServiceClient(c, g.base, opts...).Check(ctx, connect.NewRequest(checkRequest(t)))
		return err
	}
	type call func(context.Context, *http.Client, ...connect.ClientOption) error
	cases := []struct {
		name      string
		cert      *tls.Certificate
		call      call
		opts      []connect.ClientOption
		wantCode  connect.Code // 0: success
		handshake bool         // want a TLS handshake failure, no RPC at all
	}{
		{name: "spiffe client checks over connect", cert: &gateway, call: check},
		{name: "spiffe client checks over grpc", cert: &gateway, call: check, opts: []connect.ClientOption{connect.WithGRPC()}},
		{name: "gateway may not read consents", cert: &gateway, call: consentGet, wantCode: connect.CodePermissionDenied},
		{name: "granted importer reaches consent service", cert: &importer, call: consentGet, wantCode: connect.CodeUnimplemented},
		{name: "dns identity granted everything", cert: &dnsAdmin, call: consentGet, wantCode: connect.CodeUnimplemented},
		{name: "certificate without SAN is unauthenticated", cert: &noSAN, call: check, wantCode: connect.CodeUnauthenticated},
		{name: "no client certificate refused", cert: nil, call: check, handshake: true},
		{name: "wrong CA refused", cert: &foreign, call: check, handshake: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			opts := append([]connect.ClientOption{connect.WithInterceptors(tagCase(tc.name))}, tc.opts...)
			err := tc.call(ctx, tlsClient(ca, tc.cert), opts...)
			switch {
			case tc.handshake:
				// How the refusal surfaces on the client depends on
				// timing (with TLS 1.3 the client may finish its side
				// and write the request before the alert arrives), so
				// assert what matters: the call failed and no request
				// reached the server's handler.
				if err == nil {
					t.Fatal("want a refused TLS handshake, got success")
				}
				if g.sawCase(tc.name) {
					t.Fatalf("a request without a trusted client certificate reached the handler (client saw %v)", err)
				}
			case tc.wantCode == 0 && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.wantCode != 0 && connect.CodeOf(err) != tc.wantCode:
				t.Fatalf("want %v, got %v", tc.wantCode, err)
			}
			// The tag must arrive when a request is served, or the
			// handshake cases' "never reached" would prove nothing.
			if !tc.handshake && !g.sawCase(tc.name) {
				t.Fatal("served request was not recorded by the test middleware")
			}
		})
	}

	t.Run("plain http to the TLS port fails", func(t *testing.T) {
		t.Parallel()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http" + strings.TrimPrefix(g.base, "https") + "/healthz")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("cleartext request served on the TLS port")
			}
		}
	})
}

// tagCase sets the test case header on every request of a client.
func tagCase(name string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(testCaseHeader, name)
			return next(ctx, req)
		}
	}
}

func TestNewTLSConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "ca")
	_, c, k := ca.issue(t, true, nil, []string{"localhost"})
	cert, key := writeFile(t, dir, "c.pem", c), writeFile(t, dir, "k.pem", k)
	for _, tc := range []struct {
		name  string
		files server.TLSFiles
	}{
		{"no key", server.TLSFiles{CertFile: cert}},
		{"missing cert file", server.TLSFiles{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: key}},
		{"key is not a key", server.TLSFiles{CertFile: cert, KeyFile: cert}},
		{"client CA without PEM", server.TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: writeFile(t, dir, "junk", []byte("junk"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := server.NewTLSConfig(tc.files); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8787": true,
		"[::1]:8787":     true,
		"localhost:8787": true,
		":8787":          false,
		"0.0.0.0:8787":   false,
		"[::]:8787":      false,
		"10.1.2.3:8787":  false,
		"garbage":        false,
	} {
		if got := server.IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
