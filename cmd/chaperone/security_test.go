package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// selfSigned writes a self-signed certificate and key for 127.0.0.1.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chaperone"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestSecurityFlags(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwks, []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`), 0o600)
	callers := filepath.Join(t.TempDir(), "callers.yaml")
	os.WriteFile(callers, []byte("callers:\n  - name: a\n    mtls: [spiffe://x/y]\n    allow: ['*']\n"), 0o600)
	for _, tc := range []struct {
		name    string
		addr    string
		args    []string
		wantErr bool
		scheme  string
	}{
		{name: "loopback, nothing configured", addr: "127.0.0.1:0", scheme: "http"},
		{name: "all interfaces without TLS refused", addr: ":8787", wantErr: true},
		{name: "public address without TLS refused", addr: "0.0.0.0:8787", wantErr: true},
		{name: "public address, --insecure", addr: "0.0.0.0:8787", args: []string{"--insecure"}, scheme: "http"},
		{name: "public address, TLS but no caller authentication refused", addr: "0.0.0.0:8787", args: []string{"--tls-cert", cert, "--tls-key", key}, wantErr: true},
		{name: "public address, mutual TLS", addr: "0.0.0.0:8787", args: []string{"--tls-cert", cert, "--tls-key", key, "--client-ca", cert, "--callers", callers}, scheme: "https"},
		{name: "public address, TLS and JWT", addr: "[::]:8787", args: []string{"--tls-cert", cert, "--tls-key", key, "--jwks", jwks, "--issuer", "https://idp", "--audience", "chaperone"}, scheme: "https"},
		{name: "cert without key", addr: "127.0.0.1:0", args: []string{"--tls-cert", cert}, wantErr: true},
		{name: "client CA without TLS", addr: "127.0.0.1:0", args: []string{"--client-ca", cert}, wantErr: true},
		{name: "jwks without issuer", addr: "127.0.0.1:0", args: []string{"--jwks", jwks, "--audience", "a"}, wantErr: true},
		{name: "audience without jwks", addr: "127.0.0.1:0", args: []string{"--audience", "a"}, wantErr: true},
		{name: "callers without authentication", addr: "127.0.0.1:0", args: []string{"--callers", callers}, wantErr: true},
		{name: "alg none refused", addr: "127.0.0.1:0", args: []string{"--jwks", jwks, "--issuer", "i", "--audience", "a", "--jwt-algorithms", "none"}, wantErr: true},
		{name: "jwks over plain http to a remote host refused", addr: "127.0.0.1:0", args: []string{"--jwks", "http://idp.example.com/jwks", "--issuer", "i", "--audience", "a"}, wantErr: true},
		{name: "tracing on", addr: "127.0.0.1:0", args: []string{"--otlp-endpoint", "http://127.0.0.1:4318"}, scheme: "http"},
		{name: "zero request size", addr: "127.0.0.1:0", args: []string{"--max-request-bytes", "0"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			f := addSecurityFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			s, err := f.build(context.Background(), tc.addr, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tc.wantErr {
				var ee *exitError
				if !errors.As(err, &ee) || ee.code != exitUsage {
					t.Fatalf("want a usage error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.close(context.Background())
			if s.scheme() != tc.scheme {
				t.Errorf("scheme %q, want %q", s.scheme(), tc.scheme)
			}
			if len(s.options) == 0 || s.metrics == nil {
				t.Error("no server options or metrics")
			}
		})
	}
}
