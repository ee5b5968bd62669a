package consentstore

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// ErrBreakerOpen is the cause of an [ErrUnavailable] returned without
// asking Redis: the last reads failed in a row, so decisions are denied at
// once instead of each waiting for the timeout.
var ErrBreakerOpen = errors.New("redis reads are failing; not retried yet")

// Reads that may trip the breaker: the hot-path lookups of decisions.
const (
	breakerTrips = 2                      // consecutive failed reads that open it
	breakerOpen  = 500 * time.Millisecond // how long it stays open before a read is tried again
)

// breaker fails reads fast while Redis is known to be down. After
// breakerTrips consecutive failed reads it opens for breakerOpen; the first
// read after that tries Redis again (and any success closes it), and a
// re-established invalidation subscription closes it at once. Only failures
// of Redis count, not a caller's own cancelled context.
type breaker struct {
	failures  atomic.Int32
	openUntil atomic.Int64 // unix nanoseconds
	now       func() time.Time
}

// allow reports whether a read may go to Redis.
func (b *breaker) allow() bool {
	until := b.openUntil.Load()
	return until == 0 || b.now().UnixNano() >= until
}

// done records the outcome of a read that went to Redis.
func (b *breaker) done(ctx context.Context, err error) {
	if err == nil {
		b.reset()
		return
	}
	if ctx.Err() != nil {
		return // the caller gave up; says nothing about Redis
	}
	if b.failures.Add(1) >= breakerTrips {
		b.openUntil.Store(b.now().Add(breakerOpen).UnixNano())
	}
}

func (b *breaker) reset() {
	b.failures.Store(0)
	b.openUntil.Store(0)
}
