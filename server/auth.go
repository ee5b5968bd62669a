package server

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Caller is who sent a request, as established by the [Guard].
type Caller struct {
	// ID names the caller in logs, metrics and rate limits: the token
	// subject, else the first certificate identity, else "anonymous".
	ID string
	// CertIdentities are the SAN URIs and DNS names of a verified client
	// certificate (mutual TLS).
	CertIdentities []string
	// Subject and ClientID come from a verified bearer token (sub, and
	// client_id or azp).
	Subject, ClientID string
	// Anonymous is true when no authentication is configured at all and
	// the request is let through as it was before callers were checked.
	Anonymous bool
}

// AnonymousID is the [Caller.ID] of requests when no caller authentication
// is configured.
const AnonymousID = "anonymous"

// CallerFromContext returns the caller of the request ctx belongs to.
func CallerFromContext(ctx context.Context) (*Caller, bool) {
	ri := requestInfoFrom(ctx)
	if ri == nil || ri.caller == nil {
		return nil, false
	}
	return ri.caller, true
}

// Errors of caller authentication and authorization. The guard answers an
// error matching ErrUnauthenticated with Connect code unauthenticated, one
// matching ErrPermissionDenied with permission_denied.
var (
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
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
	ReasonUnknownKey      = "token signed by an unknown key"
	ReasonSignature       = "token signature invalid"
	ReasonExpired         = "token expired"
	ReasonNotYetValid     = "token not yet valid"
	ReasonIssuer          = "token issuer not accepted"
	ReasonAudience        = "token audience not accepted"
	ReasonMissingClaim    = "token lacks a required claim"
	ReasonKeysUnavailable = "token keys unavailable"
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

// JWTConfig says which bearer tokens are accepted.
type JWTConfig struct {
	Issuer     string   // required: the exact iss
	Audience   []string // required: the token's aud must contain one of these
	Algorithms []string // allow-list; empty means DefaultAlgorithms()
	// Skew is the clock skew allowed on exp, nbf and iat; 0 means 30s.
	Skew time.Duration
	// CacheSize bounds the verified-token cache (0 means 10000). A token
	// seen before is not verified again until the cache entry ends: at the
	// token's expiry, after CacheTTL, or when the key set changes.
	CacheSize int
	CacheTTL  time.Duration // 0 means 1 minute
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// JWTVerifier verifies bearer tokens against a [JWKS].
type JWTVerifier struct {
	keys     *JWKS
	issuer   string
	audience []string
	algs     map[string]jwa.SignatureAlgorithm
	skew     time.Duration
	now      func() time.Time
	cache    *tokenCache
	provider jws.KeyProvider
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
		keys:     keys,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		algs:     algs,
		skew:     cfg.Skew,
		now:      cfg.Now,
	}
	if v.skew == 0 {
		v.skew = 30 * time.Second
	}
	if v.now == nil {
		v.now = time.Now
	}
	size, ttl := cfg.CacheSize, cfg.CacheTTL
	if size == 0 {
		size = 10000
	}
	if ttl == 0 {
		ttl = time.Minute
	}
	v.cache = &tokenCache{max: size, ttl: ttl, entries: make(map[string]tokenEntry)}
	v.provider = jws.KeyProviderFunc(v.fetchKeys)
	return v, nil
}

// TokenClaims are the claims of a verified token that Chaperone uses.
type TokenClaims struct {
	Subject  string
	ClientID string
	Expiry   time.Time
}

// Verify checks raw (a compact JWS) and returns its claims, or a
// [*TokenError].
func (v *JWTVerifier) Verify(ctx context.Context, raw string) (*TokenClaims, error) {
	now := v.now()
	gen := v.keys.generation()
	if c, ok := v.cache.get(raw, now, gen); ok {
		return c, nil
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
	var cid string
	if tok.Get("client_id", &cid) == nil || tok.Get("azp", &cid) == nil {
		c.ClientID = cid
	}
	v.cache.put(raw, c, now, gen)
	return c, nil
}

// fetchKeys is the key provider: the algorithm must be allowed, and the key
// is the one of the token's kid in the current key set (refetched once,
// rate limited, when the kid is unknown, so a rotated key is picked up).
func (v *JWTVerifier) fetchKeys(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	h := sig.ProtectedHeaders()
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
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// tokenCache remembers verified tokens so that a caller sending the same
// token on every request pays for one signature check, not one per call.
// Entries end at the token's expiry, after ttl, or when the key set
// generation changes (a key was rotated out).
type tokenCache struct {
	max int
	ttl time.Duration

	mu      sync.RWMutex
	entries map[string]tokenEntry
}

type tokenEntry struct {
	claims *TokenClaims
	until  time.Time
	gen    uint64
}

func (c *tokenCache) get(raw string, now time.Time, gen uint64) (*TokenClaims, bool) {
	c.mu.RLock()
	e, ok := c.entries[raw]
	c.mu.RUnlock()
	if !ok || e.gen != gen || !now.Before(e.until) {
		return nil, false
	}
	return e.claims, true
}

func (c *tokenCache) put(raw string, claims *TokenClaims, now time.Time, gen uint64) {
	until := now.Add(c.ttl)
	if claims.Expiry.Before(until) {
		until = claims.Expiry
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if e.gen != gen || !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[raw] = tokenEntry{claims: claims, until: until, gen: gen}
}

// JWKSConfig tunes a [JWKS].
type JWKSConfig struct {
	// Client fetches URL sources; nil means a client with a 10s timeout.
	Client *http.Client
	// MinRefresh is the least time between two fetches triggered by an
	// unknown kid (so forged kids cannot make Chaperone hammer the
	// issuer); 0 means 30s.
	MinRefresh time.Duration
	// MaxAge is how long a fetched set is used before it is refreshed in
	// the background; 0 means 10 minutes.
	MaxAge time.Duration
	// AllowInsecureHTTP allows an http:// URL to a non-loopback host.
	AllowInsecureHTTP bool
}

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// JWKS is a JSON Web Key Set from an https URL or a file, cached, refreshed
// in the background when old, and refetched when a token names a key it
// does not hold (key rotation), at most once per MinRefresh.
type JWKS struct {
	source string
	isURL  bool
	cfg    JWKSConfig

	set         atomic.Pointer[jwk.Set]
	gen         atomic.Uint64
	fetchedAt   atomic.Int64 // unix nanos of the last successful fetch
	refreshing  atomic.Bool
	mu          sync.Mutex // serialises fetches
	lastAttempt time.Time
}

// NewJWKS loads the key set at source (an http(s) URL or a file path). It
// fails when the set cannot be loaded now: a misconfigured issuer should
// stop the server at start, not refuse every caller later.
func NewJWKS(ctx context.Context, source string, cfg JWKSConfig) (*JWKS, error) {
	k := &JWKS{source: source, cfg: cfg}
	if k.cfg.Client == nil {
		k.cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if k.cfg.MinRefresh == 0 {
		k.cfg.MinRefresh = 30 * time.Second
	}
	if k.cfg.MaxAge == 0 {
		k.cfg.MaxAge = 10 * time.Minute
	}
	if strings.HasPrefix(source, "https://") || strings.HasPrefix(source, "http://") {
		u, err := url.Parse(source)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		if u.Scheme == "http" && !cfg.AllowInsecureHTTP && !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("jwks: %s: keys fetched over plain http could be forged; use https", source)
		}
		k.isURL = true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fetchLocked(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// generation changes whenever a fetch brings a different key set.
func (k *JWKS) generation() uint64 { return k.gen.Load() }

// Lookup returns the key with id kid ("" matches a set of exactly one key).
func (k *JWKS) Lookup(ctx context.Context, kid string) (jwk.Key, error) {
	if time.Since(time.Unix(0, k.fetchedAt.Load())) > k.cfg.MaxAge && k.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer k.refreshing.Store(false)
			k.refresh(context.WithoutCancel(ctx), false)
		}()
	}
	if key, ok := k.find(kid); ok {
		return key, nil
	}
	if err := k.refresh(ctx, true); err != nil {
		return nil, &TokenError{Reason: ReasonKeysUnavailable, Err: err}
	}
	if key, ok := k.find(kid); ok {
		return key, nil
	}
	return nil, &TokenError{Reason: ReasonUnknownKey, Err: fmt.Errorf("kid %q", kid)}
}

func (k *JWKS) find(kid string) (jwk.Key, bool) {
	set := *k.set.Load()
	if kid == "" {
		if set.Len() == 1 {
			return set.Key(0)
		}
		return nil, false
	}
	return set.LookupKeyID(kid)
}

// refresh fetches the set; for an unknown kid (rateLimited) at most once
// per MinRefresh. Concurrent callers wait for one fetch.
func (k *JWKS) refresh(ctx context.Context, rateLimited bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rateLimited && time.Since(k.lastAttempt) < k.cfg.MinRefresh {
		return nil // fetched recently: the kid really is unknown
	}
	return k.fetchLocked(ctx)
}

func (k *JWKS) fetchLocked(ctx context.Context) error {
	k.lastAttempt = time.Now()
	raw, err := k.read(ctx)
	if err != nil {
		return err
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return fmt.Errorf("jwks: parse %s: %w", k.source, err)
	}
	if set.Len() == 0 {
		return fmt.Errorf("jwks: %s holds no key", k.source)
	}
	for i := range set.Len() {
		key, _ := set.Key(i)
		if key.KeyType() == jwa.OctetSeq() {
			return fmt.Errorf("jwks: %s holds a symmetric key; only public keys are accepted", k.source)
		}
	}
	if old := k.set.Load(); old == nil || !sameKeys(*old, set) {
		k.set.Store(&set)
		k.gen.Add(1)
	}
	k.fetchedAt.Store(time.Now().UnixNano())
	return nil
}

func (k *JWKS) read(ctx context.Context) ([]byte, error) {
	if !k.isURL {
		b, err := os.ReadFile(k.source)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		return b, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.source, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: fetch %s: status %d", k.source, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: fetch: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks: %s is larger than %d bytes", k.source, maxJWKSBytes)
	}
	return b, nil
}

// sameKeys compares two sets by their kids and thumbprints.
func sameKeys(a, b jwk.Set) bool {
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		ka, _ := a.Key(i)
		kb, _ := b.Key(i)
		ta, err1 := ka.Thumbprint(crypto.SHA256)
		tb, err2 := kb.Thumbprint(crypto.SHA256)
		ida, _ := ka.KeyID()
		idb, _ := kb.KeyID()
		if err1 != nil || err2 != nil || ida != idb || string(ta) != string(tb) {
			return false
		}
	}
	return true
}

// GuardConfig says how the [Guard] recognises and limits callers. With
// neither MTLS nor JWT, every request is let through as an anonymous caller
// (the loopback first-run experience), still with correlation ids, rate
// limits and metrics.
type GuardConfig struct {
	// MTLS takes the caller from the verified client certificate (the
	// listener must require one: see [TLSFiles].ClientCAFile).
	MTLS bool
	// JWT verifies bearer tokens. With MTLS too, a request needs a valid
	// certificate and, if it sends a token, a valid token; without a token
	// the certificate alone identifies it.
	JWT *JWTVerifier
	// Authorizer decides which caller may call what; nil means the
	// defaults of an empty [AuthzConfig].
	Authorizer *Authorizer
	// RateLimiter limits requests per caller; nil means unlimited.
	RateLimiter *RateLimiter
	// Metrics records requests and decisions; nil means none.
	Metrics *Metrics
	// Logger logs refusals (warn) and one line per request (debug):
	// procedure, code, caller id, correlation id. Never bodies or tokens.
	Logger *slog.Logger
	// Public are paths served without authentication; nil means
	// [DefaultPublicPaths]().
	Public []string
}

// DefaultPublicPaths are served to anyone who can connect (with mutual TLS,
// only holders of a client certificate): health for load balancers and
// metrics for Prometheus.
func DefaultPublicPaths() []string {
	return []string{
		"/healthz",
		"/metrics",
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/Watch",
	}
}

// Guard is the HTTP middleware in front of every service. For each request
// it settles the correlation id (see [CorrelationID]), authenticates the
// caller (mutual TLS identity, bearer JWT), authorizes the procedure by its
// full name ([Authorizer]), takes a token from the caller's bucket
// ([RateLimiter]), and records metrics. Refusals are Connect errors in the
// caller's protocol (Connect, gRPC, gRPC-Web): unauthenticated,
// permission_denied, or resource_exhausted with a RetryInfo detail and a
// Retry-After header.
//
// Install it with [WithMiddleware](g.Middleware) and
// [WithHandlerOptions](g.HandlerOptions()...).
type Guard struct {
	mtls      bool
	jwt       *JWTVerifier
	anonymous bool
	authz     *Authorizer
	limiter   *RateLimiter
	metrics   *Metrics
	logger    *slog.Logger
	public    map[string]bool
	errw      *connect.ErrorWriter
	anon      *Caller // shared by every request when no authentication is configured
}

// NewGuard returns the guard for cfg.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	g := &Guard{
		mtls:      cfg.MTLS,
		jwt:       cfg.JWT,
		anonymous: !cfg.MTLS && cfg.JWT == nil,
		authz:     cfg.Authorizer,
		limiter:   cfg.RateLimiter,
		metrics:   cfg.Metrics,
		logger:    cfg.Logger,
		public:    map[string]bool{},
		errw:      connect.NewErrorWriter(),
		anon:      &Caller{ID: AnonymousID, Anonymous: true},
	}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	if g.authz == nil {
		a, err := NewAuthorizer(AuthzConfig{})
		if err != nil {
			return nil, err
		}
		g.authz = a
	}
	public := cfg.Public
	if public == nil {
		public = DefaultPublicPaths()
	}
	for _, p := range public {
		g.public[p] = true
	}
	return g, nil
}

// HandlerOptions are the Connect handler options the guard needs on every
// service: an interceptor that records each request's Connect code (and,
// with metrics, counts decisions).
func (g *Guard) HandlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithInterceptors(metricsInterceptor{g.metrics})}
}

// Middleware wraps next in the guard.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{correlationID: g.correlationID(r)}
		w.Header().Set(HeaderRequestID, ri.correlationID)
		ctx := withRequestInfo(r.Context(), ri)
		r = r.WithContext(ctx)
		if _, ok := procedureService(r.URL.Path); ok {
			ri.procedure = r.URL.Path
		}
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(attribute.String("chaperone.correlation_id", ri.correlationID))
		}

		if !g.public[r.URL.Path] {
			caller, err := g.authenticate(ctx, r)
			if err != nil {
				g.refuse(w, r, ri, start, connect.CodeUnauthenticated, err)
				return
			}
			ri.caller = caller
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetAttributes(attribute.String("chaperone.caller", caller.ID))
			}
			if ri.procedure != "" || !caller.Anonymous {
				if err := g.authz.Authorize(caller, r.URL.Path); err != nil {
					g.refuse(w, r, ri, start, connect.CodePermissionDenied, err)
					return
				}
			}
			if g.limiter != nil {
				if err := g.limiter.Allow(caller.ID, g.authz.rateFor(caller)); err != nil {
					g.refuse(w, r, ri, start, connect.CodeResourceExhausted, err)
					return
				}
			}
		}

		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		g.finish(ctx, ri, start, sw)
	})
}

func (g *Guard) correlationID(r *http.Request) string {
	if id := r.Header.Get(HeaderRequestID); validRequestID(id) {
		return id
	}
	// With tracing on, the span of this request carries the trace id of
	// the incoming traceparent, or a new one.
	if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return correlationID("", r.Header.Get(HeaderTraceparent))
}

// authenticate establishes the caller of r.
func (g *Guard) authenticate(ctx context.Context, r *http.Request) (*Caller, error) {
	if g.anonymous {
		return g.anon, nil
	}
	c := &Caller{}
	if g.mtls {
		c.CertIdentities = certificateIdentities(r)
		if len(c.CertIdentities) == 0 {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				return nil, fmt.Errorf("%w: verified client certificate required", ErrUnauthenticated)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, errNoIdentity)
		}
	}
	if g.jwt != nil {
		raw, ok := bearerToken(r.Header.Get("Authorization"))
		switch {
		case ok:
			claims, err := g.jwt.Verify(ctx, raw)
			if err != nil {
				return nil, err
			}
			c.Subject, c.ClientID = claims.Subject, claims.ClientID
		case !g.mtls:
			return nil, &TokenError{Reason: ReasonMissingToken}
		}
	}
	switch {
	case c.Subject != "":
		c.ID = c.Subject
	case len(c.CertIdentities) > 0:
		c.ID = c.CertIdentities[0]
	default:
		return nil, &TokenError{Reason: ReasonMissingClaim, Err: errors.New("no caller identity")}
	}
	return c, nil
}

// bearerToken returns the token of an "Authorization: Bearer …" header.
func bearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	return tok, tok != ""
}

// refuse answers r with a Connect error of code and logs why, without
// tokens or request bodies.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, ri *requestInfo, start time.Time, code connect.Code, cause error) {
	ctx := r.Context()
	var msg string
	var te *TokenError
	var rl *RateLimitError
	switch {
	case errors.As(cause, &te):
		msg = te.Reason
	case errors.As(cause, &rl):
		msg = "rate limit exceeded"
	case code == connect.CodePermissionDenied:
		msg = "caller is not allowed to call " + r.URL.Path
	case errors.Is(cause, errNoIdentity):
		msg = errNoIdentity.Error()
	default:
		msg = "authentication required"
	}
	cerr := connect.NewError(code, errors.New(msg))
	if rl != nil {
		secs := int64((rl.RetryAfter + time.Second - 1) / time.Second)
		cerr.Meta().Set("Retry-After", strconv.FormatInt(secs, 10))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(rl.RetryAfter)}); err == nil {
			cerr.AddDetail(d)
		}
	}
	level := slog.LevelWarn
	if rl != nil {
		level = slog.LevelInfo
	}
	callerID := ""
	if ri.caller != nil {
		callerID = ri.caller.ID
	}
	g.logger.LogAttrs(ctx, level, "caller refused",
		slog.String("code", code.String()),
		slog.String("procedure", r.URL.Path),
		slog.String("caller", callerID),
		slog.String("correlation_id", ri.correlationID),
		slog.String("remote_addr", r.RemoteAddr),
		slog.String("error", cause.Error()),
	)
	if g.errw.IsSupported(r) {
		_ = g.errw.Write(w, r, cerr)
	} else {
		http.Error(w, msg, connectHTTPStatus(code))
	}
	ri.code, ri.codeSet = code, true
	if g.metrics != nil {
		g.metrics.refused(code)
	}
	g.finish(ctx, ri, start, nil)
}

func connectHTTPStatus(c connect.Code) int {
	switch c {
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// finish records metrics and the debug access line of one request.
func (g *Guard) finish(ctx context.Context, ri *requestInfo, start time.Time, sw *statusWriter) {
	if !ri.codeSet && sw != nil {
		ri.code, ri.codeSet = httpStatusCode(sw.status, sw.Header())
	}
	elapsed := time.Since(start)
	if g.metrics != nil && ri.procedure != "" {
		g.metrics.observe(g.metrics.procedureLabel(ri.procedure), codeLabel(ri.code, ri.codeSet), elapsed)
	}
	if g.logger.Enabled(ctx, slog.LevelDebug) && ri.procedure != "" {
		callerID := ""
		if ri.caller != nil {
			callerID = ri.caller.ID
		}
		g.logger.LogAttrs(ctx, slog.LevelDebug, "request",
			slog.String("procedure", ri.procedure),
			slog.String("code", codeLabel(ri.code, ri.codeSet)),
			slog.String("caller", callerID),
			slog.String("correlation_id", ri.correlationID),
			slog.Duration("duration", elapsed),
		)
	}
}

// statusWriter remembers the status code; it keeps Flush and Unwrap so
// streaming and http.ResponseController still work through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
