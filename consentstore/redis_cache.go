package consentstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
)

// cacheShards is the number of generation counters that guard inserts.
const cacheShards = 64

// expiring is a cached value with an expiry time.
type expiring interface{ expiry() time.Time }

// localCache is a bounded LRU (hashicorp/golang-lru) of entries that expire.
// Expiry is checked on read, so the cache runs no goroutine.
//
// A read that missed loads from Redis and inserts only when no
// invalidation of its key (or flush) happened since it started: it takes
// the key's generation before loading, and add compares it under mu, the
// same lock invalidations take to bump it. A load racing a write can thus
// never put the pre-write state back into the cache.
type localCache[V expiring] struct {
	lru  *lru.Cache[string, V] // nil: caching off
	seed maphash.Seed

	mu   sync.Mutex
	gens [cacheShards]uint64
}

func newLocalCache[V expiring](size int) (*localCache[V], error) {
	c := &localCache[V]{seed: maphash.MakeSeed()}
	if size > 0 {
		l, err := lru.New[string, V](size)
		if err != nil {
			return nil, fmt.Errorf("local cache: %w", err)
		}
		c.lru = l
	}
	return c, nil
}

func (c *localCache[V]) shard(key string) int {
	return int(maphash.String(c.seed, key) % cacheShards)
}

func (c *localCache[V]) get(key string) (V, bool) {
	var zero V
	if c.lru == nil {
		return zero, false
	}
	v, ok := c.lru.Get(key)
	if !ok {
		return zero, false
	}
	if !time.Now().Before(v.expiry()) {
		c.lru.Remove(key)
		return zero, false
	}
	return v, true
}

func (c *localCache[V]) generation(key string) uint64 {
	if c.lru == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[c.shard(key)]
}

func (c *localCache[V]) add(key string, v V, gen uint64) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[c.shard(key)] == gen {
		c.lru.Add(key, v)
	}
}

func (c *localCache[V]) invalidate(key string) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[c.shard(key)]++
	c.lru.Remove(key)
}

func (c *localCache[V]) purge() {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.gens {
		c.gens[i]++
	}
	c.lru.Purge()
}

func (c *localCache[V]) len() int {
	if c.lru == nil {
		return 0
	}
	return c.lru.Len()
}

// untrust stops serving the cache and drops it: invalidations may be missed.
func (r *Redis) untrust() {
	r.trusted.Store(false)
	r.patients.purge()
	r.agreements.purge()
	r.revoked.purge()
	r.flushes.Add(1)
}

// trust drops what was cached before the subscription was confirmed and
// starts serving the cache.
func (r *Redis) trust() {
	r.patients.purge()
	r.agreements.purge()
	r.revoked.purge()
	r.flushes.Add(1)
	r.reads.reset()
	r.trusted.Store(true)
}

// invalidate handles one invalidation message.
func (r *Redis) invalidate(msg string) {
	origin, msg, _ := strings.Cut(msg, "|")
	if origin == r.origin {
		return
	}
	switch {
	case strings.HasPrefix(msg, "p:"):
		r.patients.invalidate(msg[2:])
	case strings.HasPrefix(msg, "a:"):
		r.agreements.invalidate(msg[2:])
	case strings.HasPrefix(msg, "t:"):
		r.revoked.invalidate(msg[2:])
	default:
		// Unknown message: be safe.
		r.patients.purge()
		r.agreements.purge()
		r.revoked.purge()
	}
}

// listen keeps the invalidation subscription up until ctx ends. Each time
// it is lost the cache is dropped; each time it is back the cache is
// dropped again and served anew.
func (r *Redis) listen(ctx context.Context) {
	defer close(r.done)
	wait := 10 * time.Millisecond
	for ctx.Err() == nil {
		subscribed, err := r.subscribe(ctx)
		r.untrust()
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			wait = 10 * time.Millisecond
			r.logger.Warn("redis invalidation subscription lost; local cache dropped", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxResubscribeWait)
	}
}

// subscribe runs one subscription until it fails; subscribed reports
// whether it was ever confirmed.
func (r *Redis) subscribe(ctx context.Context) (subscribed bool, err error) {
	r.psMu.Lock()
	if r.closed {
		r.psMu.Unlock()
		return false, context.Canceled
	}
	ps := r.client.Subscribe(ctx)
	r.ps = ps
	r.psMu.Unlock()
	defer func() {
		r.psMu.Lock()
		r.ps = nil
		r.psMu.Unlock()
		_ = ps.Close()
	}()

	sctx, cancel := r.call(ctx)
	err = ps.Subscribe(sctx, r.channel)
	cancel()
	if err != nil {
		return false, err
	}
	msg, err := ps.ReceiveTimeout(ctx, r.timeout)
	if err != nil {
		return false, err
	}
	if s, ok := msg.(*redis.Subscription); !ok || s.Kind != "subscribe" {
		return false, fmt.Errorf("unexpected subscription reply %v", msg)
	}
	r.trust()
	r.logger.Info("redis invalidation subscription live", slog.String("channel", r.channel))

	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, r.pingInterval)
		if err != nil {
			if !isTimeout(err) || ctx.Err() != nil {
				return true, err
			}
			if pinged {
				return true, errors.New("invalidation subscription: PING unanswered")
			}
			pctx, cancel := r.call(ctx)
			err = ps.Ping(pctx)
			cancel()
			if err != nil {
				return true, err
			}
			pinged = true
			continue
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.invalidate(m.Payload)
		case *redis.Pong:
			pinged = false
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return true, fmt.Errorf("invalidation subscription: %s", m.Kind)
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
