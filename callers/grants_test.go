package callers_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/callers"
)

// certificate returns a parsed certificate with the given SANs.
func certificate(t *testing.T, uris, dns []string) *x509.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     dns,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertificateNamespaces: URI SANs match only URI entries of the callers
// file and DNS SANs only DNS entries, so a DNS SAN spelt like a SPIFFE id
// gets nothing of that id's grant.
func TestCertificateNamespaces(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/callers.yaml"
	if err := os.WriteFile(path, []byte(`
callers:
  - name: admin
    mtls: [spiffe://rt/admin]
    allow: ["*"]
  - name: gateway
    mtls: [gateway.rt.internal]
    allow: [chaperone.v1.ConsentService]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := callers.LoadAuthzConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := callers.NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const admin, consent = "/chaperone.v1.BundleService/Activate", "/chaperone.v1.ConsentService/Put"
	for _, tc := range []struct {
		name             string
		uris, dns        []string
		wantID           string
		mayAdmin, mayPut bool
	}{
		{name: "URI SAN spiffe id", uris: []string{"spiffe://rt/admin"}, wantID: "spiffe://rt/admin", mayAdmin: true, mayPut: true},
		{name: "DNS SAN spelt as the spiffe id", dns: []string{"spiffe://rt/admin"}, wantID: "dns:spiffe://rt/admin"},
		{name: "DNS SAN", dns: []string{"gateway.rt.internal"}, wantID: "dns:gateway.rt.internal", mayPut: true},
		{name: "URI SAN spelt as the DNS name", uris: []string{"gateway.rt.internal://x"}, wantID: "gateway.rt.internal://x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := callers.FromCertificate(certificate(t, tc.uris, tc.dns))
			if err != nil {
				t.Fatal(err)
			}
			if c.ID != tc.wantID {
				t.Errorf("ID %q, want %q", c.ID, tc.wantID)
			}
			if got := a.Authorize(c, admin) == nil; got != tc.mayAdmin {
				t.Errorf("may call %s: %v, want %v", admin, got, tc.mayAdmin)
			}
			if got := a.Authorize(c, consent) == nil; got != tc.mayPut {
				t.Errorf("may call %s: %v, want %v", consent, got, tc.mayPut)
			}
		})
	}
	if _, err := callers.FromCertificate(certificate(t, nil, nil)); err == nil {
		t.Error("a certificate without SANs named a caller")
	}
}
