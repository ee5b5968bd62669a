package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"

	"github.com/chaperone-pdp/chaperone/fhir"
)

// Limits of break-glass grants.
const (
	DefaultGrantTTL = 4 * time.Hour
	MaxGrantTTL     = 24 * time.Hour
	MinReasonLength = 20
)

// ErrNotFound is returned for a grant or agreement that does not exist.
var ErrNotFound = errors.New("not found")

// InvalidError reports a bad field of a grant or agreement.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// Grant is a break-glass grant: Subject may access Patient's record until
// ExpiresAt, for Reason.
type Grant struct {
	ID        string
	Subject   string
	Patient   string
	Reason    string
	GrantedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	Revoked   bool
}

// ActiveAt reports whether the grant allows access at t.
func (g Grant) ActiveAt(t time.Time) bool {
	return !g.Revoked && !t.Before(g.CreatedAt) && t.Before(g.ExpiresAt)
}

// NewGrant checks a grant request and fills its times: ttl 0 means
// [DefaultGrantTTL]; more than [MaxGrantTTL] is refused; the reason must
// have at least [MinReasonLength] characters that are not white space.
func NewGrant(subject, patient, reason, grantedBy string, ttl time.Duration, now time.Time) (Grant, error) {
	switch {
	case subject == "":
		return Grant{}, &InvalidError{"subject", "is required"}
	case patient == "":
		return Grant{}, &InvalidError{"patient", "is required"}
	case nonSpace(reason) < MinReasonLength:
		return Grant{}, &InvalidError{"reason", fmt.Sprintf("must have at least %d non-space characters", MinReasonLength)}
	case ttl < 0:
		return Grant{}, &InvalidError{"ttl", "must not be negative"}
	case ttl > MaxGrantTTL:
		return Grant{}, &InvalidError{"ttl", fmt.Sprintf("must be at most %s", MaxGrantTTL)}
	}
	if ttl == 0 {
		ttl = DefaultGrantTTL
	}
	return Grant{Subject: subject, Patient: patient, Reason: reason, GrantedBy: grantedBy, CreatedAt: now, ExpiresAt: now.Add(ttl)}, nil
}

// nonSpace counts the characters of s that are not white space.
func nonSpace(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// Agreement is the business associate agreement of a client application.
type Agreement struct {
	ClientID string
	Vendor   string
	// Tier is the vendor's tier, e.g. "covered-entity", "business-associate", "consumer".
	Tier      string
	BAASigned bool
	// BAAExpires is when the agreement ends; zero means it does not.
	BAAExpires    time.Time
	Purposes      []string
	ResourceTypes []string
	Revoked       bool
	UpdatedAt     time.Time
}

// ActiveAt reports whether the agreement covers disclosures at t: signed,
// not revoked, not expired.
func (a Agreement) ActiveAt(t time.Time) bool {
	return a.BAASigned && !a.Revoked && (a.BAAExpires.IsZero() || t.Before(a.BAAExpires))
}

// Validate checks an agreement before it is stored.
func (a Agreement) Validate() error {
	if a.ClientID == "" {
		return &InvalidError{"clientId", "is required"}
	}
	if a.Vendor == "" {
		return &InvalidError{"vendor", "is required"}
	}
	for i, p := range a.Purposes {
		if p == "" {
			return &InvalidError{fmt.Sprintf("purposes[%d]", i), "is empty"}
		}
	}
	for i, t := range a.ResourceTypes {
		if t == "" {
			return &InvalidError{fmt.Sprintf("resourceTypes[%d]", i), "is empty"}
		}
	}
	return nil
}

// Covers reports whether the agreement allows purpose (one of its purposes
// or a specialisation of one: CLMATTCH is within HPAYMT) on resourceType ("*"
// in either list allows any).
func (a Agreement) Covers(purpose, resourceType string) bool {
	return (slices.Contains(a.Purposes, "*") || slices.ContainsFunc(a.Purposes, func(p string) bool { return fhir.PurposeWithin(purpose, p) })) &&
		(slices.Contains(a.ResourceTypes, "*") || slices.Contains(a.ResourceTypes, resourceType))
}

// Grants stores break-glass grants.
type Grants interface {
	PutGrant(ctx context.Context, g Grant) (Grant, error)
	RevokeGrant(ctx context.Context, id string) (Grant, error)
	ListGrants(ctx context.Context, subject, patient string) ([]Grant, error)
	ActiveGrant(ctx context.Context, subject, patient string, at time.Time) (Grant, bool, error)
}

// Agreements stores vendor agreements.
type Agreements interface {
	PutAgreement(ctx context.Context, a Agreement) (Agreement, error)
	GetAgreement(ctx context.Context, clientID string) (Agreement, error)
	RevokeAgreement(ctx context.Context, clientID string) (Agreement, error)
}
