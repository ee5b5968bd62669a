package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits of token revocations.
const (
	// MaxRevocation is the furthest a revocation's Until may lie ahead:
	// tokens live hours, not months, so an Until beyond it is a mistake
	// (a year typed for a month, a timestamp in milliseconds).
	MaxRevocation = 31 * 24 * time.Hour
	// RevocationGrace is how long an entry is kept after its Until: a
	// token verifier accepts an exp up to its clock skew in the past, so
	// the entry outlives the token's exp by more than any skew allowed.
	RevocationGrace = time.Minute
	// MaxJTILength bounds a jti in bytes.
	MaxJTILength = 256
)

// Revocation puts one bearer token on the revocation list: the token whose
// jti is JTI or, for a token without one, whose SHA-256 (of the compact
// token as sent, lower-case hex) is TokenSHA256. Exactly one is set. A
// verifier refuses the token until Until (its exp) has passed; the entry
// then expires on its own, [RevocationGrace] later.
type Revocation struct {
	JTI         string
	TokenSHA256 string
	Until       time.Time
	RevokedBy   string
	RevokedAt   time.Time
}

// Key is the revocation's key in a store: "j:" and the jti, or "h:" and
// the token's hash. The two spaces cannot collide.
func (r Revocation) Key() string {
	if r.JTI != "" {
		return JTIKey(r.JTI)
	}
	return HashKey(r.TokenSHA256)
}

// Expires is when the entry may be dropped: Until plus [RevocationGrace].
func (r Revocation) Expires() time.Time { return r.Until.Add(RevocationGrace) }

// JTIKey is the store key of a jti.
func JTIKey(jti string) string { return "j:" + jti }

// HashKey is the store key of a token hash (lower-case hex SHA-256).
func HashKey(sha string) string { return "h:" + sha }

// TokenSHA256 is the hash a revocation of raw (a compact JWS, as sent in
// Authorization) names: SHA-256, lower-case hex.
func TokenSHA256(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// NewRevocation checks a revocation request: one of jti and tokenSHA256
// (64 lower-case hex digits), until after now and at most [MaxRevocation]
// ahead. Errors are [*InvalidError] naming the field ("jti", "tokenSha256",
// "until").
func NewRevocation(jti, tokenSHA256 string, until time.Time, revokedBy string, now time.Time) (Revocation, error) {
	switch {
	case jti == "" && tokenSHA256 == "":
		return Revocation{}, &InvalidError{"jti", "is required (or tokenSha256 for a token without a jti)"}
	case jti != "" && tokenSHA256 != "":
		return Revocation{}, &InvalidError{"tokenSha256", "give jti or tokenSha256, not both"}
	case len(jti) > MaxJTILength:
		return Revocation{}, &InvalidError{"jti", fmt.Sprintf("must be at most %d bytes", MaxJTILength)}
	case jti != "" && !utf8.ValidString(jti):
		return Revocation{}, &InvalidError{"jti", "must be UTF-8"}
	case tokenSHA256 != "" && !isSHA256Hex(tokenSHA256):
		return Revocation{}, &InvalidError{"tokenSha256", "must be 64 lower-case hex digits (the SHA-256 of the token)"}
	case until.IsZero():
		return Revocation{}, &InvalidError{"until", "is required (the token's exp)"}
	case !until.After(now):
		return Revocation{}, &InvalidError{"until", "is in the past: an expired token is refused anyway"}
	case until.Sub(now) > MaxRevocation:
		return Revocation{}, &InvalidError{"until", fmt.Sprintf("is more than %d days ahead; give the token's exp", MaxRevocation/(24*time.Hour))}
	}
	return Revocation{JTI: jti, TokenSHA256: tokenSHA256, Until: until.UTC(), RevokedBy: revokedBy, RevokedAt: now.UTC()}, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Revocations is the token revocation list.
type Revocations interface {
	// RevokeToken puts r on the list (replacing an entry of the same key:
	// the later Until wins). It returns the entry as stored.
	RevokeToken(ctx context.Context, r Revocation) (Revocation, error)
	// TokenRevoked reports whether a token with this jti ("" for none) or
	// this hash is on the list. An error means the list could not be read:
	// the token must be refused.
	TokenRevoked(ctx context.Context, jti, tokenSHA256 string) (bool, error)
}
