package callers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// TokenError says why a bearer token was refused. Reason is a short fixed
// phrase safe to return to the caller and to log; Err is the detail.
type TokenError struct {
	Reason string
	Err    error
}

// Token refusal reasons.
const (
	ReasonMissingToken    = "bearer token required"
	ReasonMalformed       = "malformed token"
	ReasonAlgorithm       = "token algorithm not allowed"
	ReasonCritical        = "token has an unsupported critical header"
	ReasonUnknownKey      = "token signed by an unknown key"
	ReasonSignature       = "token signature invalid"
	ReasonExpired         = "token expired"
	ReasonNotYetValid     = "token not yet valid"
	ReasonLifetime        = "token lifetime too long"
	ReasonIssuer          = "token issuer not accepted"
	ReasonAudience        = "token audience not accepted"
	ReasonMissingClaim    = "token lacks a required claim"
	ReasonKeysUnavailable = "token keys unavailable"
	ReasonRevoked         = "token revoked"
	// ReasonRevocationUnavailable: the revocation list could not be
	// read, so whether the token was revoked is unknown.
	ReasonRevocationUnavailable = "token revocation state unavailable"
	// ReasonInactive: the issuer's introspection endpoint says the token
	// is not active (revoked, or otherwise ended).
	ReasonInactive = "token not active"
	// ReasonIntrospectionUnavailable: the introspection endpoint did not
	// answer, or answered what is not an introspection response.
	ReasonIntrospectionUnavailable = "token introspection unavailable"
)

func (e *TokenError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

// Unwrap makes a TokenError match [ErrUnauthenticated] and its detail.
func (e *TokenError) Unwrap() []error { return []error{ErrUnauthenticated, e.Err} }

// DefaultAlgorithms are the token signature algorithms accepted unless
// configured otherwise: asymmetric only. "none" and the HMAC algorithms
// (whose key would have to be published in the JWKS) are never accepted.
func DefaultAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// DefaultMaxLifetime is the longest token lifetime accepted unless
// configured otherwise.
const DefaultMaxLifetime = 24 * time.Hour

// JWTConfig says which bearer tokens are accepted.
type JWTConfig struct {
	Issuer     string   // required: the exact iss
	Audience   []string // required: the token's aud must contain one of these
	Algorithms []string // allow-list; empty means DefaultAlgorithms()
	// Skew is the clock skew allowed on exp, nbf and iat; 0 means 30s.
	Skew time.Duration
	// MaxLifetime caps how long a token may be valid: exp - iat (exp - now
	// for a token without iat) may not exceed it; 0 means
	// [DefaultMaxLifetime]. A stolen token of year 9999 is refused.
	MaxLifetime time.Duration
	// CacheSize bounds the verified-token cache (0 means 10000). A token
	// seen before is not verified again until the cache entry ends: at the
	// token's expiry, after CacheTTL, or when the key set changes.
	CacheSize int
	CacheTTL  time.Duration // 0 means 1 minute
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// KeepClaims keeps every claim of a verified token in
	// [TokenClaims].Claims (for end-user tokens, whose claims describe the
	// subject).
	KeepClaims bool
	// RequireJTI refuses a token without a jti (ReasonMissingClaim), so
	// every accepted token can be revoked by its jti.
	RequireJTI bool
	// Revocations, when set, is asked on every Verify, for tokens found
	// in the verified-token cache too: a token on the list is refused
	// (ReasonRevoked), and so is one whose state cannot be read
	// (ReasonRevocationUnavailable).
	Revocations RevocationList
	// Introspection, when set, asks the issuer's RFC 7662 endpoint
	// whether a verified token is still active (its answers cached per
	// token, see [Introspector]).
	Introspection *Introspector
}

// RevocationList says whether a token was revoked before its expiry: by
// its jti ("" when it has none) or by the SHA-256 of the token as sent
// (lower-case hex). The access package's stores are such lists. An error
// means the state is unknown; the token is then refused.
type RevocationList interface {
	TokenRevoked(ctx context.Context, jti, tokenSHA256 string) (bool, error)
}

// JWTVerifier verifies bearer tokens against a [JWKS].
type JWTVerifier struct {
	keys        *JWKS
	issuer      string
	audience    []string
	algs        map[string]jwa.SignatureAlgorithm
	skew        time.Duration
	maxLifetime time.Duration
	ttl         time.Duration
	now         func() time.Time
	cache       *lru.Cache[string, tokenEntry]
	provider    jws.KeyProvider
	keepClaims  bool
	requireJTI  bool
	revocations RevocationList
	introspect  *Introspector
}

// tokenEntry is a verified token: its claims, until when they may be
// reused, the key set that verified them, and the token's SHA-256 (hex;
// computed when a revocation list or introspection needs it).
type tokenEntry struct {
	claims *TokenClaims
	until  time.Time
	set    jwk.Set
	sha    string
}

// NewJWTVerifier returns a verifier of tokens signed by keys in keys.
func NewJWTVerifier(keys *JWKS, cfg JWTConfig) (*JWTVerifier, error) {
	if keys == nil {
		return nil, errors.New("jwt: no key set")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("jwt: an issuer is required")
	}
	if len(cfg.Audience) == 0 {
		return nil, errors.New("jwt: an audience is required")
	}
	if cfg.MaxLifetime < 0 {
		return nil, errors.New("jwt: the maximum token lifetime must be positive")
	}
	names := cfg.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms()
	}
	algs := make(map[string]jwa.SignatureAlgorithm, len(names))
	for _, n := range names {
		alg, ok := jwa.LookupSignatureAlgorithm(n)
		if !ok || alg == jwa.NoSignature() || strings.HasPrefix(n, "HS") || strings.EqualFold(n, "none") {
			return nil, fmt.Errorf("jwt: algorithm %q is not allowed", n)
		}
		algs[alg.String()] = alg
	}
	v := &JWTVerifier{
		keys:        keys,
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		algs:        algs,
		skew:        cmp(cfg.Skew, 30*time.Second),
		maxLifetime: cmp(cfg.MaxLifetime, DefaultMaxLifetime),
		ttl:         cmp(cfg.CacheTTL, time.Minute),
		now:         cfg.Now,
		keepClaims:  cfg.KeepClaims,
		requireJTI:  cfg.RequireJTI,
		revocations: cfg.Revocations,
		introspect:  cfg.Introspection,
	}
	if v.now == nil {
		v.now = time.Now
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = 10000
	}
	c, err := lru.New[string, tokenEntry](size)
	if err != nil {
		return nil, fmt.Errorf("jwt: %w", err)
	}
	v.cache = c
	v.provider = jws.KeyProviderFunc(v.fetchKeys)
	return v, nil
}

// cmp returns d, or def when d is zero.
func cmp(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// TokenClaims are the claims of a verified token that Chaperone uses.
type TokenClaims struct {
	Subject  string
	ClientID string
	// JTI is the token's jti ("" when it has none).
	JTI    string
	Expiry time.Time
	// Claims are all the token's claims, by name, when
	// [JWTConfig].KeepClaims is set; else nil. Shared: do not modify.
	Claims map[string]any
}

// Verify checks raw (a compact JWS) and returns its claims, or a
// [*TokenError]. A token found in the verified-token cache is still
// checked against the revocation list and introspection, when configured.
func (v *JWTVerifier) Verify(ctx context.Context, raw string) (*TokenClaims, error) {
	now := v.now()
	set := v.keys.current()
	if e, ok := v.cache.Get(raw); ok {
		if e.set == set && now.Before(e.until) {
			if err := v.live(ctx, raw, &e); err != nil {
				return nil, err
			}
			return e.claims, nil
		}
		v.cache.Remove(raw)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, &TokenError{Reason: ReasonMalformed, Err: errors.New("not a compact JWS")}
	}
	tok, err := jwt.ParseString(raw,
		jwt.WithKeyProvider(v.provider),
		jwt.WithContext(ctx),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.issuer),
		jwt.WithAcceptableSkew(v.skew),
		jwt.WithClock(jwt.ClockFunc(v.now)),
		jwt.WithRequiredClaim("exp"),
		jwt.WithRequiredClaim("sub"),
	)
	if err != nil {
		return nil, classifyTokenError(err)
	}
	aud, _ := tok.Audience()
	if !intersects(aud, v.audience) {
		return nil, &TokenError{Reason: ReasonAudience, Err: fmt.Errorf("aud %q", aud)}
	}
	c := &TokenClaims{}
	c.Subject, _ = tok.Subject()
	if c.Subject == "" {
		// An empty sub names nobody: the caller would have no identity.
		return nil, &TokenError{Reason: ReasonMissingClaim, Err: errors.New("empty sub")}
	}
	c.Expiry, _ = tok.Expiration()
	from := now
	if iat, ok := tok.IssuedAt(); ok && iat.Before(now) {
		from = iat
	}
	if life := c.Expiry.Sub(from); life > v.maxLifetime+v.skew {
		return nil, &TokenError{Reason: ReasonLifetime, Err: fmt.Errorf("valid for %s, at most %s", life.Round(time.Second), v.maxLifetime)}
	}
	var cid string
	if tok.Get("client_id", &cid) == nil || tok.Get("azp", &cid) == nil {
		c.ClientID = cid
	}
	c.JTI, _ = tok.JwtID()
	if c.JTI == "" && v.requireJTI {
		return nil, &TokenError{Reason: ReasonMissingClaim, Err: errors.New("no jti")}
	}
	if v.keepClaims {
		c.Claims = make(map[string]any, len(tok.Keys()))
		for _, k := range tok.Keys() {
			var val any
			if tok.Get(k, &val) == nil {
				c.Claims[k] = val
			}
		}
	}
	until := now.Add(v.ttl)
	if c.Expiry.Before(until) {
		until = c.Expiry
	}
	// The set the key came from: after a refetch it may be newer than the
	// one read above.
	e := tokenEntry{claims: c, until: until, set: v.keys.current()}
	if v.revocations != nil || v.introspect != nil {
		e.sha = tokenHash(raw)
	}
	v.cache.Add(raw, e)
	if err := v.live(ctx, raw, &e); err != nil {
		return nil, err
	}
	return c, nil
}

// live checks that a verified token was not revoked: not on the
// revocation list, and active at the issuer's introspection endpoint.
func (v *JWTVerifier) live(ctx context.Context, raw string, e *tokenEntry) error {
	if v.revocations != nil {
		revoked, err := v.revocations.TokenRevoked(ctx, e.claims.JTI, e.sha)
		switch {
		case err != nil:
			return &TokenError{Reason: ReasonRevocationUnavailable, Err: err}
		case revoked:
			return &TokenError{Reason: ReasonRevoked, Err: fmt.Errorf("jti %q", e.claims.JTI)}
		}
	}
	if v.introspect != nil {
		return v.introspect.Check(ctx, raw, e.sha, e.claims.Expiry)
	}
	return nil
}

// tokenHash is the SHA-256 of a token as sent, lower-case hex (the form
// revocations name).
func tokenHash(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// fetchKeys is the key provider: the algorithm must be allowed, no critical
// header may be present (none is understood), and the key is the one of
// the token's kid in the current key set (refetched, rate limited, when the
// kid is unknown, so a rotated key is picked up).
func (v *JWTVerifier) fetchKeys(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	h := sig.ProtectedHeaders()
	if h.Has(jws.CriticalKey) {
		crit, _ := h.Critical()
		return &TokenError{Reason: ReasonCritical, Err: fmt.Errorf("crit %q", crit)}
	}
	alg, ok := h.Algorithm()
	if !ok {
		return &TokenError{Reason: ReasonAlgorithm, Err: errors.New("no alg header")}
	}
	allowed, ok := v.algs[alg.String()]
	if !ok {
		return &TokenError{Reason: ReasonAlgorithm, Err: fmt.Errorf("alg %q", alg.String())}
	}
	kid, _ := h.KeyID()
	key, err := v.keys.Lookup(ctx, kid)
	if err != nil {
		return err
	}
	if ka, ok := key.Algorithm(); ok && ka.String() != allowed.String() {
		return &TokenError{Reason: ReasonAlgorithm, Err: fmt.Errorf("key %q is for %q, token says %q", kid, ka.String(), allowed.String())}
	}
	if use, ok := key.KeyUsage(); ok && use != "sig" {
		return &TokenError{Reason: ReasonUnknownKey, Err: fmt.Errorf("key %q is not a signing key", kid)}
	}
	sink.Key(allowed, key)
	return nil
}

func classifyTokenError(err error) error {
	var te *TokenError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, jwt.TokenExpiredError()):
		return &TokenError{Reason: ReasonExpired, Err: err}
	case errors.Is(err, jwt.TokenNotYetValidError()), errors.Is(err, jwt.InvalidIssuedAtError()):
		return &TokenError{Reason: ReasonNotYetValid, Err: err}
	case errors.Is(err, jwt.InvalidIssuerError()):
		return &TokenError{Reason: ReasonIssuer, Err: err}
	case errors.Is(err, jwt.InvalidAudienceError()):
		return &TokenError{Reason: ReasonAudience, Err: err}
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return &TokenError{Reason: ReasonMissingClaim, Err: err}
	case errors.Is(err, jwt.ValidateError()):
		return &TokenError{Reason: ReasonMalformed, Err: err}
	case errors.Is(err, jws.VerificationError()), errors.Is(err, jws.VerifyError()):
		return &TokenError{Reason: ReasonSignature, Err: err}
	default:
		return &TokenError{Reason: ReasonMalformed, Err: err}
	}
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
