package consentstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/access/revocationtest"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

func TestRedisRevocations(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	revocationtest.Run(t, func(t *testing.T, c *revocationtest.Clock) access.Revocations {
		return newRedis(t, client, "", consentstore.WithClock(c.Now))
	})
}

// commandCalls reads the calls of one command from INFO commandstats.
func commandCalls(t *testing.T, info, cmd string) int {
	t.Helper()
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		if err != nil {
			t.Fatalf("commandstats line %q", line)
		}
		return n
	}
	return 0
}

// TestRedisRevocationReplicas: two stores on one Redis (two replicas) see
// each other's revocations through pub/sub within a second, despite a warm
// cache; a lookup on a warm cache reaches Redis no more (counted by the
// client hook and by Redis's own INFO commandstats); entries carry a key
// TTL ending at until plus the grace.
func TestRedisRevocationReplicas(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t) // a server of its own: commandstats are counted
	ctx := context.Background()
	clientA, rtA := newClient(t, addr)
	clientB, _ := newClient(t, addr)
	admin, _ := newClient(t, addr)
	a := newRedis(t, clientA, "rep")
	b := newRedis(t, clientB, "rep")
	hash := access.TokenSHA256("e30.e30.sig")

	// Warm both caches: not revoked.
	for _, s := range []*consentstore.Redis{a, b} {
		for _, jti := range []string{"tok-1", "tok-2"} {
			if got, err := s.TokenRevoked(ctx, jti, hash); err != nil || got {
				t.Fatalf("TokenRevoked(%s) before any revocation = %v, %v", jti, got, err)
			}
		}
	}
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := rtA.n.Load()
	const lookups = 1000
	for range lookups {
		if got, err := a.TokenRevoked(ctx, "tok-1", hash); err != nil || got {
			t.Fatalf("TokenRevoked on a warm cache = %v, %v", got, err)
		}
	}
	if n := rtA.n.Load() - before; n != 0 {
		t.Errorf("%d lookups on a warm cache made %d round trips, want 0", lookups, n)
	}
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := commandCalls(t, info, "get"); n != 0 {
		t.Errorf("%d lookups on a warm cache: Redis counted %d GET, want 0", lookups, n)
	}

	// B revokes tok-1: A, whose cache says "not revoked", sees it within 1s.
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	start := time.Now()
	rv, err := b.RevokeToken(ctx, access.Revocation{JTI: "tok-1", Until: until, RevokedBy: "admin", RevokedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if rv.JTI != "tok-1" || !rv.Until.Equal(until) || rv.RevokedBy != "admin" {
		t.Fatalf("RevokeToken = %+v", rv)
	}
	waitFor(t, time.Second, "replica A sees B's revocation", func() bool {
		got, err := a.TokenRevoked(ctx, "tok-1", hash)
		return err == nil && got
	})
	t.Logf("replica A refused tok-1 %s after B revoked it", time.Since(start).Round(time.Millisecond))
	if got, err := b.TokenRevoked(ctx, "tok-1", ""); err != nil || !got {
		t.Errorf("the revoking replica: TokenRevoked = %v, %v", got, err)
	}
	// A revokes by hash: B sees it too, for any jti.
	if _, err := a.RevokeToken(ctx, access.Revocation{TokenSHA256: hash, Until: until}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "replica B sees A's revocation", func() bool {
		got, err := b.TokenRevoked(ctx, "tok-2", hash)
		return err == nil && got
	})
	if got, err := b.TokenRevoked(ctx, "tok-2", access.TokenSHA256("other")); err != nil || got {
		t.Errorf("another token of the same replica: TokenRevoked = %v, %v", got, err)
	}

	// The key expires on its own at until + grace.
	for key, want := range map[string]time.Time{"rep:revoked:j:tok-1": until.Add(access.RevocationGrace), "rep:revoked:h:" + hash: until.Add(access.RevocationGrace)} {
		ms, err := admin.Do(ctx, "PEXPIRETIME", key).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if ms != want.UnixMilli() {
			t.Errorf("PEXPIRETIME %s = %d, want %d", key, ms, want.UnixMilli())
		}
	}
}

// TestRedisRevocationExpiresInRedis: Redis drops the entry itself when its TTL
// ends (a PXAT a few milliseconds ahead), and a replica reading Redis again
// finds no entry.
func TestRedisRevocationExpiresInRedis(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	client, _ := newClient(t, addr)
	s := newRedis(t, client, "short", consentstore.WithCache(0, 0))
	// An until within the grace of now: the entry ends 50 ms from now.
	until := time.Now().Add(-access.RevocationGrace + 50*time.Millisecond)
	if _, err := s.RevokeToken(ctx, access.Revocation{JTI: "short", Until: until}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "key expired by Redis", func() bool {
		n, err := client.Exists(ctx, "short:revoked:j:short").Result()
		return err == nil && n == 0
	})
	if got, err := s.TokenRevoked(ctx, "short", ""); err != nil || got {
		t.Errorf("TokenRevoked after the key expired = %v, %v", got, err)
	}
}

// TestRedisRevocationUnavailable: with Redis down, a lookup the cache
// cannot answer is an error (the token is refused), never "not revoked".
func TestRedisRevocationUnavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	client, _ := newClient(t, srv.Addr())
	s := newRedis(t, client, "")
	if got, err := s.TokenRevoked(ctx, "warm", ""); err != nil || got {
		t.Fatalf("TokenRevoked = %v, %v", got, err)
	}
	srv.Kill()
	waitFor(t, 2*time.Second, "subscription loss noticed", func() bool { return !s.Stats().Subscribed })
	for _, jti := range []string{"warm", "cold"} {
		got, err := s.TokenRevoked(ctx, jti, "")
		if !errors.Is(err, consentstore.ErrUnavailable) || got {
			t.Errorf("TokenRevoked(%s) with Redis down = %v, %v; want ErrUnavailable", jti, got, err)
		}
	}
	if _, err := s.RevokeToken(ctx, access.Revocation{JTI: "x", Until: time.Now().Add(time.Hour)}); !errors.Is(err, consentstore.ErrUnavailable) {
		t.Errorf("RevokeToken with Redis down: %v", err)
	}
}

func TestRedisRevocationsProperty(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	revocationtest.Property(t, func(t *testing.T, c *revocationtest.Clock) access.Revocations {
		return newRedis(t, client, "", consentstore.WithClock(c.Now))
	})
}

// testTopologyRevocations runs the revocation suite on a topology
// (Cluster, Sentinel) and checks that a revocation through one store
// reaches the warm cache of another within a second, for jtis spread over
// the slots, and that a warm lookup makes no round trip.
func testTopologyRevocations(t *testing.T, topo topology) {
	client, _ := topo.client(t)
	revocationtest.Run(t, func(t *testing.T, c *revocationtest.Clock) access.Revocations {
		return newRedis(t, client, "", consentstore.WithClock(c.Now))
	})
	ctx := context.Background()
	prefix := fmt.Sprintf("rev%d", prefixSeq.Add(1))
	ca, _ := topo.client(t)
	cb, rtB := topo.client(t)
	a, b := newRedis(t, ca, prefix), newRedis(t, cb, prefix)
	const tokens = 20
	for i := range tokens {
		if got, err := b.TokenRevoked(ctx, fmt.Sprint("tok-", i), ""); err != nil || got {
			t.Fatalf("before: TokenRevoked(tok-%d) = %v, %v", i, got, err)
		}
	}
	before := rtB.n.Load()
	for i := range tokens {
		if got, err := b.TokenRevoked(ctx, fmt.Sprint("tok-", i), ""); err != nil || got {
			t.Fatalf("warm: TokenRevoked(tok-%d) = %v, %v", i, got, err)
		}
	}
	if n := rtB.n.Load() - before; n != 0 {
		t.Errorf("%d warm lookups: %d round trips, want 0", tokens, n)
	}
	until := time.Now().Add(time.Hour)
	for i := range tokens {
		if _, err := a.RevokeToken(ctx, access.Revocation{JTI: fmt.Sprint("tok-", i), Until: until}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Second, "every revocation seen by the other store", func() bool {
		for i := range tokens {
			if got, err := b.TokenRevoked(ctx, fmt.Sprint("tok-", i), ""); err != nil || !got {
				return false
			}
		}
		return true
	})
}
