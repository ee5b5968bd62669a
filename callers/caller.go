package callers

import (
	"crypto/x509"
	"errors"
)

// Caller is who sent a request, as the server's guard established it.
type Caller struct {
	// ID names the caller in logs, metrics, rate limits and audit
	// records: the token subject, else the first URI SAN of the
	// certificate, else its first DNS SAN prefixed "dns:" (so a DNS name
	// spelt like a URI can never pass for one), else [AnonymousID].
	ID string
	// URIs and DNSNames are the SANs of a verified client certificate
	// (mutual TLS). They are separate namespaces: a callers file entry
	// written as a URI matches only URIs, any other entry only DNS names.
	URIs, DNSNames []string
	// Subject and ClientID come from a verified bearer token (sub, and
	// client_id or azp).
	Subject, ClientID string
	// Anonymous is true when no authentication is configured at all.
	Anonymous bool
}

// AnonymousID is the [Caller.ID] of requests when no caller authentication
// is configured.
const AnonymousID = "anonymous"

// Errors of caller authentication and authorization.
var (
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNoIdentity is a verified certificate without a URI or DNS SAN.
	ErrNoIdentity = errors.New("client certificate has no SAN URI or DNS name")
)

// FromCertificate returns the caller a verified client certificate names,
// or an error matching [ErrNoIdentity].
func FromCertificate(leaf *x509.Certificate) (*Caller, error) {
	c := &Caller{}
	for _, u := range leaf.URIs {
		c.URIs = append(c.URIs, u.String())
	}
	c.DNSNames = append(c.DNSNames, leaf.DNSNames...)
	switch {
	case len(c.URIs) > 0:
		c.ID = c.URIs[0]
	case len(c.DNSNames) > 0:
		c.ID = "dns:" + c.DNSNames[0]
	default:
		return nil, ErrNoIdentity
	}
	return c, nil
}
