package callers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// JWKSConfig tunes a [JWKS].
type JWKSConfig struct {
	// Client fetches URL sources; nil means a client with a 10s timeout.
	Client *http.Client
	// MinRefresh is the least time between two fetches triggered by an
	// unknown kid (so forged kids cannot make Chaperone hammer the
	// issuer); 0 means 30s.
	MinRefresh time.Duration
	// MaxAge is how often the set is refreshed in the background; 0 means
	// 10 minutes.
	MaxAge time.Duration
	// AllowInsecureHTTP allows an http:// URL to a non-loopback host.
	AllowInsecureHTTP bool
}

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// JWKS is a JSON Web Key Set from an https URL or a file, held by a jwx
// jwk.Cache: refreshed in the background every MaxAge, and refetched when a
// token names a key it does not hold (key rotation), at most once per
// MinRefresh. Symmetric keys are never used. Close stops the refreshes.
type JWKS struct {
	source string // as configured, for messages
	url    string // registered with the cache (file:// for a file)
	cfg    JWKSConfig
	cache  *jwk.Cache
	res    *httprc.ResourceBase[jwk.Set]

	mu          sync.Mutex // serialises refetches for unknown kids
	lastRefetch time.Time
}

// NewJWKS loads the key set at source (an http(s) URL or a file path). It
// fails when the set cannot be loaded now: a misconfigured issuer should
// stop the server at start, not refuse every caller later.
func NewJWKS(ctx context.Context, source string, cfg JWKSConfig) (*JWKS, error) {
	k := &JWKS{source: source, cfg: cfg}
	k.cfg.MinRefresh = cmp(cfg.MinRefresh, 30*time.Second)
	k.cfg.MaxAge = cmp(cfg.MaxAge, 10*time.Minute)
	var client httprc.HTTPClient = cfg.Client
	if cfg.Client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if strings.HasPrefix(source, "https://") || strings.HasPrefix(source, "http://") {
		u, err := url.Parse(source)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		if u.Scheme == "http" && !cfg.AllowInsecureHTTP && !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("jwks: %s: keys fetched over plain http could be forged; use https", source)
		}
		k.url = source
	} else {
		abs, err := filepath.Abs(source)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		k.url = (&url.URL{Scheme: "file", Path: abs}).String()
		client = fileClient{}
	}
	cache, err := jwk.NewCache(context.WithoutCancel(ctx), httprc.NewClient(httprc.WithWorkers(1)))
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	k.cache = cache
	fail := func(err error) (*JWKS, error) {
		_ = cache.Shutdown(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := cache.Register(ctx, k.url,
		jwk.WithHTTPClient(client),
		jwk.WithMaxFetchBodySize(maxJWKSBytes),
		jwk.WithConstantInterval(k.cfg.MaxAge),
		jwk.WithWaitReady(false),
	); err != nil {
		return fail(fmt.Errorf("jwks: %w", err))
	}
	// The first fetch, synchronously, so a bad source fails now.
	set, err := cache.Refresh(ctx, k.url)
	if err != nil {
		return fail(fmt.Errorf("jwks: load %s: %w", source, err))
	}
	if set.Len() == 0 {
		return fail(fmt.Errorf("jwks: %s holds no key", source))
	}
	for i := range set.Len() {
		if key, _ := set.Key(i); key.KeyType() == jwa.OctetSeq() {
			return fail(fmt.Errorf("jwks: %s holds a symmetric key; only public keys are accepted", source))
		}
	}
	if k.res, err = cache.LookupResource(ctx, k.url); err != nil {
		return fail(fmt.Errorf("jwks: %w", err))
	}
	k.lastRefetch = time.Now()
	return k, nil
}

// Close stops the background refreshes.
func (k *JWKS) Close(ctx context.Context) error { return k.cache.Shutdown(ctx) }

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// current is the set in use; a refresh replaces it by another value.
func (k *JWKS) current() jwk.Set { return k.res.Resource() }

// Lookup returns the key with id kid ("" matches a set of exactly one key).
// An unknown kid refetches the set, at most once per MinRefresh; callers
// asking meanwhile wait for that fetch.
func (k *JWKS) Lookup(ctx context.Context, kid string) (jwk.Key, error) {
	if key, ok := find(k.current(), kid); ok {
		return key, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := find(k.current(), kid); ok {
		return key, nil // another caller's refetch brought it
	}
	if now := time.Now(); now.Sub(k.lastRefetch) >= k.cfg.MinRefresh {
		k.lastRefetch = now
		if _, err := k.cache.Refresh(ctx, k.url); err != nil {
			return nil, &TokenError{Reason: ReasonKeysUnavailable, Err: err}
		}
		if key, ok := find(k.current(), kid); ok {
			return key, nil
		}
	}
	return nil, &TokenError{Reason: ReasonUnknownKey, Err: fmt.Errorf("kid %q", kid)}
}

func find(set jwk.Set, kid string) (jwk.Key, bool) {
	var key jwk.Key
	var ok bool
	if kid == "" {
		if set.Len() == 1 {
			key, ok = set.Key(0)
		}
	} else {
		key, ok = set.LookupKeyID(kid)
	}
	if !ok || key.KeyType() == jwa.OctetSeq() {
		return nil, false
	}
	return key, true
}

// fileClient answers the cache's GET of a file:// URL from the file system,
// so a key set in a file is refreshed like one behind a URL.
type fileClient struct{}

func (fileClient) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "file" {
		return nil, errors.New("jwks: not a file URL")
	}
	f, err := os.Open(req.URL.Path)
	if err != nil {
		return nil, err
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Status:     "200 OK",
		Header:     http.Header{},
		Body: struct {
			io.Reader
			io.Closer
		}{io.LimitReader(f, maxJWKSBytes+1), f},
		Request: req,
	}, nil
}
