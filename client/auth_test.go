package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestHeadersReachTheServer(t *testing.T) {
	t.Parallel()
	p := startPDP(t, 0)
	c, err := client.New(p.url, generous(), client.WithBearerToken("tok-1"), client.WithHeader("X-Tenant", "a"), client.WithHeader("X-Tenant", "b"))
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t.Context(), allowReq())
	c.BatchCheck(t.Context(), []*chaperonev1.CheckRequest{allowReq(), denyReq()})
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.headers) != 2 {
		t.Fatalf("%d requests reached the server, want 2", len(p.headers))
	}
	for _, h := range p.headers {
		if got := h.Get("Authorization"); got != "Bearer tok-1" {
			t.Errorf("Authorization %q", got)
		}
		if got := strings.Join(h.Values("X-Tenant"), ","); got != "a,b" {
			t.Errorf("X-Tenant %q", got)
		}
	}
}

// TestMutualTLS: a client certificate presented through WithHTTPClient
// lets the client through a server that requires one; without it, the
// client fails closed.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := func(serial int64, server bool) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}

	p := startPDP(t, 0)
	p.hs.Close() // serve it again over TLS
	hs := &http.Server{Handler: p.hs.Handler, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{leaf(2, true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	url := "https://" + ln.Addr().String()

	tests := []struct {
		name  string
		certs []tls.Certificate
		want  chaperonev1.Decision
		code  string
	}{
		{"client certificate", []tls.Certificate{leaf(3, false)}, chaperonev1.Decision_DECISION_ALLOW, "POLICY_PERMIT"},
		{"no client certificate", nil, chaperonev1.Decision_DECISION_DENY, client.ReasonUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: tt.certs}}}
			c, err := client.New(url, generous(), client.WithHTTPClient(hc))
			if err != nil {
				t.Fatal(err)
			}
			resp := c.Check(t.Context(), allowReq())
			if resp.GetDecision() != tt.want || codes(resp)[0] != tt.code {
				t.Fatalf("%s %v, want %s %s", resp.GetDecision(), codes(resp), tt.want, tt.code)
			}
		})
	}
}
