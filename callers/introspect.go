package callers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// IntrospectionConfig configures an [Introspector].
type IntrospectionConfig struct {
	// URL is the issuer's RFC 7662 introspection endpoint (https, or http
	// to a loopback host).
	URL string
	// ClientID and ClientSecret authenticate Chaperone to the endpoint
	// (HTTP Basic, RFC 6749 section 2.3.1).
	ClientID, ClientSecret string
	// CacheTTL bounds how long an answer is reused; a token's answer is
	// never reused past the token's exp. 0 means
	// [DefaultIntrospectionCache].
	CacheTTL time.Duration
	// CacheSize bounds the cached answers; 0 means 10000.
	CacheSize int
	// Client makes the requests; nil means a client with a 5s timeout.
	Client *http.Client
	// AllowInsecureHTTP allows an http:// URL to a non-loopback host.
	AllowInsecureHTTP bool
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// DefaultIntrospectionCache is how long an introspection answer is reused
// unless configured otherwise.
const DefaultIntrospectionCache = 30 * time.Second

// maxIntrospectionBytes bounds an introspection response.
const maxIntrospectionBytes = 64 << 10

// introspectionBackoff is how long, after two failed asks in a row, tokens
// without a cached answer are refused at once instead of each waiting for
// the endpoint's timeout.
const introspectionBackoff = time.Second

// Introspector asks an OAuth 2.0 token introspection endpoint (RFC 7662)
// whether a token is active. Answers are cached per token (by its
// SHA-256) for at most CacheTTL and never past the token's exp. It fails
// closed: an endpoint that is down, answers an error status, or answers
// anything but a JSON object with a boolean "active" refuses the token
// (ReasonIntrospectionUnavailable); such failures are not cached, but
// after two in a row tokens without a cached answer are refused at once
// for a second before the endpoint is asked again. Concurrent asks about
// one token share one request.
type Introspector struct {
	url          string
	clientID     string
	clientSecret string
	ttl          time.Duration
	client       *http.Client
	now          func() time.Time
	cache        *lru.Cache[string, introspection]
	flight       singleflight.Group

	mu       sync.Mutex
	failures int       // failed asks in a row
	openTill time.Time // refuse without asking until then
}

// introspection is a cached answer.
type introspection struct {
	active bool
	until  time.Time
}

// NewIntrospector checks cfg and returns an introspector.
func NewIntrospector(cfg IntrospectionConfig) (*Introspector, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		return nil, errors.New("introspection: a URL is required")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Fragment != "":
		return nil, fmt.Errorf("introspection: %q: want an https URL", cfg.URL)
	case u.Scheme == "http" && !cfg.AllowInsecureHTTP && !isLoopbackHost(u.Hostname()):
		return nil, fmt.Errorf("introspection: %s: tokens and the client secret would travel in clear text; use https", cfg.URL)
	case cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("introspection: a client id and a client secret are required")
	case cfg.CacheTTL < 0:
		return nil, errors.New("introspection: the cache duration must not be negative")
	}
	in := &Introspector{
		url: cfg.URL, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
		ttl: cmp(cfg.CacheTTL, DefaultIntrospectionCache), client: cfg.Client, now: cfg.Now,
	}
	if in.client == nil {
		in.client = &http.Client{Timeout: 5 * time.Second}
	}
	if in.now == nil {
		in.now = time.Now
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = 10000
	}
	if in.cache, err = lru.New[string, introspection](size); err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	return in, nil
}

// Check returns nil when the endpoint says raw is active, else a
// [*TokenError]. sha is raw's SHA-256 (hex), the cache key; exp is the
// token's expiry, past which no answer is reused.
func (in *Introspector) Check(ctx context.Context, raw, sha string, exp time.Time) error {
	now := in.now()
	if sha == "" {
		sha = tokenHash(raw)
	}
	if a, ok := in.cache.Get(sha); ok {
		if now.Before(a.until) {
			return a.err()
		}
		in.cache.Remove(sha)
	}
	if err := in.allow(now); err != nil {
		return &TokenError{Reason: ReasonIntrospectionUnavailable, Err: err}
	}
	v, err, _ := in.flight.Do(sha, func() (any, error) { return in.ask(ctx, raw) })
	in.done(in.now(), err)
	if err != nil {
		return &TokenError{Reason: ReasonIntrospectionUnavailable, Err: err}
	}
	a := v.(introspection)
	a.until = now.Add(in.ttl)
	if !exp.IsZero() && exp.Before(a.until) {
		a.until = exp
	}
	in.cache.Add(sha, a)
	return a.err()
}

// allow refuses at once while the endpoint is backed off.
func (in *Introspector) allow(now time.Time) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if now.Before(in.openTill) {
		return errors.New("introspection endpoint failing; backing off")
	}
	return nil
}

// done counts a failed ask, or resets the count.
func (in *Introspector) done(now time.Time, err error) {
	if errors.Is(err, context.Canceled) {
		return // the caller went away: says nothing of the endpoint
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if err == nil {
		in.failures = 0
		return
	}
	if in.failures++; in.failures >= 2 {
		in.openTill = now.Add(introspectionBackoff)
	}
}

func (a introspection) err() error {
	if a.active {
		return nil
	}
	return &TokenError{Reason: ReasonInactive, Err: errors.New("introspection: active is false")}
}

// ask posts the token to the endpoint and reads its answer.
func (in *Introspector) ask(ctx context.Context, raw string) (introspection, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url, strings.NewReader(form.Encode()))
	if err != nil {
		return introspection{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.clientSecret))
	resp, err := in.client.Do(req)
	if err != nil {
		return introspection{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return introspection{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return introspection{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	if len(body) > maxIntrospectionBytes {
		return introspection{}, fmt.Errorf("response over %d bytes", maxIntrospectionBytes)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return introspection{}, fmt.Errorf("content type %q, want application/json", resp.Header.Get("Content-Type"))
	}
	var doc struct {
		Active *bool `json:"active"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return introspection{}, fmt.Errorf("response: %w", err)
	}
	if dec.More() {
		return introspection{}, errors.New("response: trailing data")
	}
	if doc.Active == nil {
		return introspection{}, errors.New(`response: no boolean "active"`)
	}
	return introspection{active: *doc.Active}, nil
}
