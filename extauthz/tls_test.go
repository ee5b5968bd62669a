package extauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue is a leaf: a server certificate for 127.0.0.1, or a client
// certificate with the SAN URI uri.
func (ca *testCA) issue(t *testing.T, server bool, uri string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Envoy reaches the door over TLS and is identified by its client
// certificate alone; the decision is recorded as its.
func TestCheckOverMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sc, sk := ca.issue(t, true, "")
	tlsCfg, err := server.NewTLSConfig(server.TLSFiles{CertFile: write("s.pem", sc), KeyFile: write("s-key.pem", sk), ClientCAFile: write("ca.pem", ca.pem)})
	if err != nil {
		t.Fatal(err)
	}
	const envoyID = "spiffe://chaperone.test/ns/edge/sa/envoy"
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "envoy", MTLS: []string{envoyID}, Allow: []string{extauthz.Service}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := server.NewGuard(server.GuardConfig{MTLS: true, Authorizer: authz})
	if err != nil {
		t.Fatal(err)
	}
	iss := newIssuer(t)
	m := iss.mapper(t, gateway.PhaseProxy)
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	rec := &recorder{}
	hs := server.New(eng, v, server.WithRecorder(rec),
		server.WithMiddleware(guard.Middleware), server.WithHandlerOptions(guard.HandlerOptions()...),
		server.WithGRPCDoor(extauthz.Service, func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
			return extauthz.New(m, s, nil).Handler
		}),
	).HTTPServer()
	server.EnableTLS(hs, tlsCfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	cc, ck := ca.issue(t, false, envoyID)
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(cert []tls.Certificate) (*authv3.CheckResponse, error) {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: cert, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/fhir/Observation?patient=Patient/51",
				Headers: map[string]string{"authorization": iss.endUser(t, "Practitioner/p1", "clinician")},
			}},
		}})
	}
	resp, err := ask([]tls.Certificate{pair})
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("%v, %v: want an allow", resp, err)
	}
	recs := rec.All()
	if len(recs) != 1 || recs[0].Caller != envoyID {
		t.Fatalf("records %+v, want one by %s", recs, envoyID)
	}
	// Without a client certificate the handshake fails: nothing decided.
	if _, err := ask(nil); grpcstatus.Code(err) != codes.Unavailable {
		t.Errorf("without a certificate: %v, want the connection refused", err)
	}
	if n := len(rec.All()); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}
