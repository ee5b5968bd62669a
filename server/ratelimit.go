package server

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateSpec is a token bucket: PerSecond requests on average, bursts of up
// to Burst. PerSecond 0 means unlimited.
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

func (s RateSpec) burst() int {
	if s.Burst > 0 {
		return s.Burst
	}
	return max(1, int(math.Ceil(s.PerSecond)))
}

// ErrRateLimited matches a [*RateLimitError].
var ErrRateLimited = errors.New("rate limited")

// RateLimitError is a request refused because its caller's bucket is
// empty; RetryAfter is when one token will be back.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limit exceeded; retry after %s", e.RetryAfter.Round(time.Millisecond))
}

// Unwrap makes a RateLimitError match [ErrRateLimited].
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// maxBuckets bounds the number of callers tracked; beyond it, callers whose
// bucket is full (idle) are forgotten.
const maxBuckets = 100_000

// RateLimiter keeps one token bucket per caller.
type RateLimiter struct {
	def RateSpec
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	spec RateSpec
	lim  *rate.Limiter
}

// NewRateLimiter returns a limiter giving each caller the bucket def
// unless [RateLimiter.Allow] is given another.
func NewRateLimiter(def RateSpec) (*RateLimiter, error) {
	if err := def.validate(); err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	return &RateLimiter{def: def, now: time.Now, buckets: map[string]*bucket{}}, nil
}

// Allow takes a token from the bucket of caller (spec, or the default when
// spec is nil) or returns a [*RateLimitError].
func (l *RateLimiter) Allow(caller string, spec *RateSpec) error {
	s := l.def
	if spec != nil {
		s = *spec
	}
	if s.PerSecond == 0 {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	b, ok := l.buckets[caller]
	if !ok || b.spec != s {
		if len(l.buckets) >= maxBuckets {
			l.evictIdleLocked(now)
		}
		b = &bucket{spec: s, lim: rate.NewLimiter(rate.Limit(s.PerSecond), s.burst())}
		l.buckets[caller] = b
	}
	l.mu.Unlock()
	if b.lim.AllowN(now, 1) {
		return nil
	}
	missing := 1 - b.lim.TokensAt(now)
	wait := time.Duration(missing / s.PerSecond * float64(time.Second))
	return &RateLimitError{RetryAfter: max(wait, time.Millisecond)}
}

func (l *RateLimiter) evictIdleLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.lim.TokensAt(now) >= float64(b.lim.Burst()) {
			delete(l.buckets, k)
		}
	}
}
