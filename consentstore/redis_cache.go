package consentstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"slices"
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
	r.resetBreakers()
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

// listen keeps the invalidation subscriptions up until ctx ends. Each time
// one is lost the cache is dropped; each time all are back the cache is
// dropped again and served anew.
func (r *Redis) listen(ctx context.Context) {
	defer close(r.done)
	wait := 10 * time.Millisecond
	for ctx.Err() == nil {
		subscribed, err := r.subscribeAll(ctx)
		r.untrust()
		if ctx.Err() != nil {
			return
		}
		r.refreshTopology() // a node may have been failed over
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

// errMastersChanged ends the subscriptions of a Cluster whose set of
// masters changed (a failover, a node added): they are made anew.
var errMastersChanged = errors.New("cluster masters changed")

// subscribeAll runs the subscriptions until one fails and reports whether
// all were ever confirmed. A standalone or Sentinel client has one. On a
// Cluster every master gets one: a write script's PUBLISH reaches the
// subscribers of its own node before the writer's reply (and the others
// through the cluster bus), so a replica cannot miss an acknowledged write
// without also seeing that master's subscription drop. The set of masters
// is checked every ping interval; when it changes, all are made anew.
func (r *Redis) subscribeAll(ctx context.Context) (bool, error) {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return r.subscribe(ctx, r.client, r.trust)
	}
	masters, err := clusterMasters(ctx, cc)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu        sync.Mutex
		confirmed int
		ever      bool
		failed    bool
		wg        sync.WaitGroup
	)
	for _, m := range masters {
		wg.Go(func() {
			_, err := r.subscribe(ctx, m, func() {
				mu.Lock()
				defer mu.Unlock()
				if confirmed++; confirmed == len(masters) && !failed {
					ever = true
					r.trust()
				}
			})
			// Drop the cache at once, not when the others have ended.
			mu.Lock()
			failed = true
			r.untrust()
			mu.Unlock()
			cancel(fmt.Errorf("subscription on %s: %w", m.Options().Addr, err))
		})
	}
	wg.Go(func() {
		t := time.NewTicker(r.pingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cc.ReloadState(ctx)
			now, err := clusterMasters(ctx, cc)
			if err == nil && !sameMasters(now, masters) {
				cancel(errMastersChanged)
				return
			}
		}
	})
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return ever, context.Cause(ctx)
}

// clusterMasters lists the clients of the masters in the client's current
// slot map.
func clusterMasters(ctx context.Context, cc *redis.ClusterClient) ([]*redis.Client, error) {
	var (
		mu  sync.Mutex
		out []*redis.Client
	)
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		out = append(out, c)
		mu.Unlock()
		return nil
	})
	return out, err
}

func sameMasters(a, b []*redis.Client) bool {
	addrs := func(cs []*redis.Client) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.Options().Addr
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(addrs(a), addrs(b))
}

// subscribe runs one subscription on client until it fails; subscribed
// reports whether it was ever confirmed, and confirmed is called when it is.
func (r *Redis) subscribe(ctx context.Context, client redis.UniversalClient, confirmed func()) (subscribed bool, err error) {
	r.psMu.Lock()
	if r.closed {
		r.psMu.Unlock()
		return false, context.Canceled
	}
	ps := client.Subscribe(ctx)
	if r.ps == nil {
		r.ps = map[*redis.PubSub]bool{}
	}
	r.ps[ps] = true
	r.psMu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer func() {
		r.psMu.Lock()
		delete(r.ps, ps)
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
	confirmed()
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
