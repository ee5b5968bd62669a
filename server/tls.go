package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// TLSFiles names the PEM files of the server's TLS identity and, for mutual
// TLS, of the certificate authorities whose client certificates are
// accepted.
type TLSFiles struct {
	CertFile string // server certificate chain (PEM)
	KeyFile  string // its private key (PEM)
	// ClientCAFile, when set, makes a client certificate issued by one of
	// these CAs mandatory: the handshake fails without one.
	ClientCAFile string
}

// certReloadInterval is how often the certificate files are checked for a
// change, so a rotated certificate is served without a restart.
const certReloadInterval = 10 * time.Second

// NewTLSConfig returns the listener configuration for f: TLS 1.2 or later,
// HTTP/2 and HTTP/1.1 by ALPN, the certificate re-read when its files
// change, and with ClientCAFile mutual TLS required.
func NewTLSConfig(f TLSFiles) (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("tls: both a certificate and a key file are needed")
	}
	rl := &certReloader{certFile: f.CertFile, keyFile: f.KeyFile}
	if err := rl.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: rl.getCertificate,
	}
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %q holds no PEM certificate", f.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// certReloader serves the certificate in certFile/keyFile, re-reading them
// when their modification time changes.
type certReloader struct {
	certFile, keyFile string

	mu        sync.Mutex
	cert      *tls.Certificate
	modTime   time.Time
	checkedAt time.Time
}

func (c *certReloader) load() error {
	st, err := os.Stat(c.certFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load key pair: %w", err)
	}
	c.mu.Lock()
	c.cert, c.modTime, c.checkedAt = &cert, st.ModTime(), time.Now()
	c.mu.Unlock()
	return nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	cert, stale := c.cert, time.Since(c.checkedAt) > certReloadInterval
	if stale {
		c.checkedAt = time.Now()
	}
	mod := c.modTime
	c.mu.Unlock()
	if stale {
		if st, err := os.Stat(c.certFile); err == nil && !st.ModTime().Equal(mod) {
			// A half-written pair fails to load; keep serving the old one.
			if err := c.load(); err == nil {
				c.mu.Lock()
				cert = c.cert
				c.mu.Unlock()
			}
		}
	}
	return cert, nil
}

// EnableTLS makes hs serve HTTPS with cfg: HTTP/1.1 and HTTP/2 over TLS
// (cleartext h2c is switched off). Serve it with hs.ServeTLS(ln, "", "").
func EnableTLS(hs *http.Server, cfg *tls.Config) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	hs.Protocols = &p
	hs.TLSConfig = cfg
}

// IsLoopbackAddr reports whether the listen address addr ("host:port")
// binds only loopback interfaces. An empty host (all interfaces) is not
// loopback; a host name counts only if every address it resolves to is.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	if host == "localhost" {
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}
