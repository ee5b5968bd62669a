package callers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// commands counts the commands a Redis client sends (a pipeline counts
// each of its commands).
type commands struct{ n atomic.Int64 }

func (h *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// redisRevocations is a Redis revocation list on a redis-server of the
// test's own, subscribed, and the counter of its client's commands.
func redisRevocations(tb testing.TB) (*consentstore.Redis, *commands) {
	tb.Helper()
	addr, _ := redistest.Start(tb)
	client := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { _ = client.Close() })
	h := &commands{}
	client.AddHook(h)
	s, err := consentstore.NewRedis(client)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for !s.Stats().Subscribed {
		if time.Now().After(deadline) {
			tb.Fatal("no subscription within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s, h
}

// TestRevocationWarmCacheNoRoundTrip: once a token was checked, checking
// it again against the Redis revocation list sends Redis nothing.
func TestRevocationWarmCacheNoRoundTrip(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	list, cmds := redisRevocations(t)
	v := configuredVerifier(t, site, callers.JWTConfig{Revocations: list})
	tok := k.token(t, "alice", withJTI("tok-1"), nil)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	before := cmds.n.Load()
	for range 1000 {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := cmds.n.Load() - before; n != 0 {
		t.Errorf("1000 verifications of a cached token sent Redis %d commands, want 0", n)
	}
}

// BenchmarkVerify verifies one token again and again (the verified-token
// cache holds it, as it does for a caller's or an end user's token between
// requests), without a revocation list, with the in-memory list, with the
// Redis list on a warm cache, and with RFC 7662 introspection (answers
// cached).
func BenchmarkVerify(b *testing.B) {
	k := newKey(b, "k1")
	site := &issuerSite{}
	site.publish(b, k)
	tok := k.token(b, "alice", withJTI("tok-1"), nil)
	redisList, cmds := redisRevocations(b)
	mem := access.NewMemory()
	for i := range 1000 { // a list that is not empty
		if _, err := mem.RevokeToken(context.Background(), access.Revocation{JTI: fmt.Sprintf("other-%d", i), Until: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	introspect := newIntrospectionServerB(b)
	in, err := callers.NewIntrospector(callers.IntrospectionConfig{URL: introspect, ClientID: "chaperone", ClientSecret: "s3cret"})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		cfg  callers.JWTConfig
	}{
		{"revocation=none", callers.JWTConfig{}},
		{"revocation=memory", callers.JWTConfig{Revocations: mem}},
		{"revocation=redis", callers.JWTConfig{Revocations: redisList}},
		{"revocation=redis+introspection", callers.JWTConfig{Revocations: redisList, Introspection: in}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			keys, err := callers.NewJWKS(context.Background(), jwksURL, callers.JWKSConfig{Client: &http.Client{Transport: site}})
			if err != nil {
				b.Fatal(err)
			}
			defer keys.Close(context.Background())
			bc.cfg.Issuer, bc.cfg.Audience = issuer, []string{audience}
			v, err := callers.NewJWTVerifier(keys, bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			before := cmds.n.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cmds.n.Load()-before)/float64(b.N), "redis-cmds/op")
		})
	}
	b.Run("uncached/revocation=none", func(b *testing.B) { benchUncached(b, k, site, callers.JWTConfig{}) })
	b.Run("uncached/revocation=redis", func(b *testing.B) { benchUncached(b, k, site, callers.JWTConfig{Revocations: redisList}) })
}

// benchUncached verifies a token the verifier has not seen (cache of one
// entry, two tokens alternating): the signature check, and for a list the
// hash of the token and, on Redis, a lookup of a token seen before.
func benchUncached(b *testing.B, k *key, site *issuerSite, cfg callers.JWTConfig) {
	keys, err := callers.NewJWKS(context.Background(), jwksURL, callers.JWKSConfig{Client: &http.Client{Transport: site}})
	if err != nil {
		b.Fatal(err)
	}
	defer keys.Close(context.Background())
	cfg.Issuer, cfg.Audience, cfg.CacheSize = issuer, []string{audience}, 1
	v, err := callers.NewJWTVerifier(keys, cfg)
	if err != nil {
		b.Fatal(err)
	}
	toks := []string{k.token(b, "alice", withJTI("a"), nil), k.token(b, "bob", withJTI("b"), nil)}
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, toks[i&1]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// newIntrospectionServerB is an introspection endpoint that says every
// token is active, on a loopback port.
func newIntrospectionServerB(b *testing.B) string {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true}`))
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}
