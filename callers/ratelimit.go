package callers

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// RateSpec is a token bucket: PerSecond decisions (or other requests) on
// average, bursts of up to Burst. PerSecond 0 means unlimited.
type RateSpec struct {
	PerSecond float64 `json:"perSecond"`
	Burst     int     `json:"burst"`
}

func (s RateSpec) validate() error {
	if s.PerSecond < 0 || math.IsNaN(s.PerSecond) || math.IsInf(s.PerSecond, 0) {
		return fmt.Errorf("perSecond %v: want a finite number >= 0", s.PerSecond)
	}
	if s.Burst < 0 {
		return fmt.Errorf("burst %d: want >= 0", s.Burst)
	}
	return nil
}

// BurstOrDefault is Burst, or PerSecond rounded up (at least 1) when Burst
// is 0.
func (s RateSpec) BurstOrDefault() int {
	if s.Burst > 0 {
		return s.Burst
	}
	return max(1, int(math.Ceil(s.PerSecond)))
}

// ErrRateLimited matches a [*RateLimitError].
var ErrRateLimited = errors.New("rate limited")

// RateLimitError is a request refused because its caller's bucket holds
// too few tokens; RetryAfter is when enough will be back. Burst is set when
// the request costs more than the bucket can ever hold (a batch larger
// than the burst): retrying the same request cannot succeed.
type RateLimitError struct {
	RetryAfter time.Duration
	Cost       int
	Burst      int
}

func (e *RateLimitError) Error() string {
	if e.Cost > e.Burst {
		return fmt.Sprintf("rate limit exceeded; a request of %d decisions exceeds the burst of %d", e.Cost, e.Burst)
	}
	return fmt.Sprintf("rate limit exceeded; retry after %s", e.RetryAfter.Round(time.Millisecond))
}

// Unwrap makes a RateLimitError match [ErrRateLimited].
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// DefaultMaxBuckets bounds the number of buckets a [RateLimiter] keeps; the
// least recently used is forgotten beyond it.
const DefaultMaxBuckets = 100_000

// RateLimiter keeps one token bucket per key (a caller id, or the remote
// address of an unauthenticated caller: see [LimitKey]) in a bounded LRU.
// A request costs one token per decision it asks for.
type RateLimiter struct {
	def RateSpec
	now func() time.Time

	mu      sync.Mutex
	buckets *lru.Cache[string, *bucket]
}

type bucket struct {
	spec RateSpec
	lim  *rate.Limiter
}

// RateLimiterOption configures a [RateLimiter].
type RateLimiterOption func(*RateLimiter)

// WithClock sets the limiter's clock (tests).
func WithClock(now func() time.Time) RateLimiterOption {
	return func(l *RateLimiter) { l.now = now }
}

// WithMaxBuckets bounds the buckets kept (default [DefaultMaxBuckets]).
func WithMaxBuckets(n int) RateLimiterOption {
	return func(l *RateLimiter) { l.buckets, _ = lru.New[string, *bucket](max(1, n)) }
}

// NewRateLimiter returns a limiter giving each key the bucket def unless
// [RateLimiter.AllowN] is given another.
func NewRateLimiter(def RateSpec, opts ...RateLimiterOption) (*RateLimiter, error) {
	if err := def.validate(); err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	l := &RateLimiter{def: def, now: time.Now}
	l.buckets, _ = lru.New[string, *bucket](DefaultMaxBuckets)
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

// Allow is AllowN(key, 1, spec).
func (l *RateLimiter) Allow(key string, spec *RateSpec) error { return l.AllowN(key, 1, spec) }

// AllowN takes n tokens from the bucket of key (spec, or the default when
// spec is nil) or returns a [*RateLimitError] and takes none.
func (l *RateLimiter) AllowN(key string, n int, spec *RateSpec) error {
	s := l.def
	if spec != nil {
		s = *spec
	}
	if s.PerSecond == 0 || n <= 0 {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	b, ok := l.buckets.Get(key)
	if !ok || b.spec != s {
		b = &bucket{spec: s, lim: rate.NewLimiter(rate.Limit(s.PerSecond), s.BurstOrDefault())}
		l.buckets.Add(key, b)
	}
	l.mu.Unlock()
	if b.lim.AllowN(now, n) {
		return nil
	}
	burst := b.lim.Burst()
	if n > burst {
		return &RateLimitError{RetryAfter: time.Duration(float64(n) / s.PerSecond * float64(time.Second)), Cost: n, Burst: burst}
	}
	missing := float64(n) - b.lim.TokensAt(now)
	wait := time.Duration(missing / s.PerSecond * float64(time.Second))
	return &RateLimitError{RetryAfter: max(wait, time.Millisecond), Cost: n, Burst: burst}
}

// Peek returns a [*RateLimitError] when the bucket of key does not hold one
// token now, without taking any.
func (l *RateLimiter) Peek(key string, spec *RateSpec) error {
	s := l.def
	if spec != nil {
		s = *spec
	}
	if s.PerSecond == 0 {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	b, ok := l.buckets.Get(key)
	l.mu.Unlock()
	if !ok || b.spec != s {
		return nil // a new bucket is full
	}
	if tokens := b.lim.TokensAt(now); tokens < 1 {
		wait := time.Duration((1 - tokens) / s.PerSecond * float64(time.Second))
		return &RateLimitError{RetryAfter: max(wait, time.Millisecond), Cost: 1, Burst: b.lim.Burst()}
	}
	return nil
}

// LimitKey is the bucket key of c: its id, or for an anonymous caller (no
// authentication configured) its remote address, so that one client cannot
// spend every other client's share. IPv6 addresses share a bucket per /64,
// the block one host usually holds.
func LimitKey(c *Caller, remoteAddr string) string {
	if !c.Anonymous {
		return c.ID
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return "addr:" + remoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "addr:" + p.String()
	}
	return "addr:" + a.String()
}
