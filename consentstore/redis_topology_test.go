package consentstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/consentstore/storetest"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// Client timeouts of the topology tests: short, as the single-server tests.
const topoTimeout = 300 * time.Millisecond

// clusterClient is a Cluster client of c, closed with the test.
func clusterClient(t testing.TB, c *redistest.Cluster) (*redis.ClusterClient, *roundTrips) {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.Addrs(), DialTimeout: topoTimeout, ReadTimeout: topoTimeout, WriteTimeout: topoTimeout,
		MaxRetries: 1, PoolSize: 16,
	})
	h := &roundTrips{}
	rdb.AddHook(h)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, h
}

// sentinelClient is a Sentinel (failover) client of s, closed with the test.
func sentinelClient(t testing.TB, s *redistest.Sentinel) (*redis.Client, *roundTrips) {
	t.Helper()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: redistest.SentinelMaster, SentinelAddrs: s.SentinelAddrs(),
		DialTimeout: topoTimeout, ReadTimeout: topoTimeout, WriteTimeout: topoTimeout, MaxRetries: 1, PoolSize: 16,
	})
	h := &roundTrips{}
	rdb.AddHook(h)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, h
}

// topology is a running Redis setup with replicas: how to open a client on
// it and how to see every data node.
type topology struct {
	name   string
	client func(t testing.TB) (redis.UniversalClient, *roundTrips)
	nodes  func() []string // addresses of the data nodes (masters and replicas)
}

// TestRedisTopologies runs the store conformance suite, the invalidation
// and subscription tests and the replica acknowledgement of writes on a
// Redis Cluster (3 masters, 3 replicas) and on Sentinel (master, replica,
// 3 sentinels), every write waiting for one replica.
func TestRedisTopologies(t *testing.T) {
	t.Parallel()
	starts := []struct {
		name  string
		start func(t *testing.T) topology
	}{
		{"cluster", func(t *testing.T) topology {
			c := redistest.StartCluster(t)
			return topology{name: "cluster",
				client: func(t testing.TB) (redis.UniversalClient, *roundTrips) { return clusterClient(t, c) },
				nodes:  c.Addrs}
		}},
		{"sentinel", func(t *testing.T) topology {
			s := redistest.StartSentinel(t)
			return topology{name: "sentinel",
				client: func(t testing.TB) (redis.UniversalClient, *roundTrips) { return sentinelClient(t, s) },
				nodes:  func() []string { return []string{s.Data[0].Addr(), s.Data[1].Addr()} }}
		}},
	}
	for _, st := range starts {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			topo := st.start(t)
			client, _ := topo.client(t)
			t.Run("conformance", func(t *testing.T) {
				t.Parallel()
				storetest.Run(t, func(t *testing.T, cfg storetest.Config) consentstore.Store {
					return newRedis(t, client, "", consentstore.WithLimits(cfg.Limits), consentstore.WithClock(cfg.Now),
						consentstore.WithMinReplicasAck(1), conformanceTimeout)
				})
			})
			t.Run("invalidation", func(t *testing.T) {
				t.Parallel()
				testTopologyInvalidation(t, topo)
			})
			t.Run("subscription lost", func(t *testing.T) {
				t.Parallel()
				testTopologySubscriptionLost(t, topo)
			})
			t.Run("writes wait for replicas", func(t *testing.T) {
				t.Parallel()
				testTopologyWait(t, topo)
			})
			t.Run("token revocations", func(t *testing.T) {
				t.Parallel()
				testTopologyRevocations(t, topo) // redis_revocation_test.go
			})
		})
	}
}

// testTopologyInvalidation: three stores on their own clients (three PDP
// replicas); writes through one, for patients spread over every slot
// range, reach the warm caches of the others; a cold read is one round
// trip, a warm one none.
func testTopologyInvalidation(t *testing.T, topo topology) {
	ctx := context.Background()
	prefix := fmt.Sprintf("inv%d", prefixSeq.Add(1))
	var stores []*consentstore.Redis
	var trips []*roundTrips
	for range 3 {
		c, rt := topo.client(t)
		stores = append(stores, newRedis(t, c, prefix, consentstore.WithMinReplicasAck(1)))
		trips = append(trips, rt)
	}
	const patients = 30
	for i := range patients {
		if _, err := stores[0].Put(ctx, denyConsent(t, fmt.Sprint("c", i), fmt.Sprint("Patient/", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range stores[1:] {
		rt := trips[i+1]
		if _, err := s.ForPatient(ctx, "Patient/none"); err != nil { // opens a connection
			t.Fatal(err)
		}
		for p := range patients {
			before := rt.n.Load()
			set, err := s.ForPatient(ctx, fmt.Sprint("Patient/", p))
			if err != nil || len(set.Consents) != 1 {
				t.Fatalf("store %d, cold read of Patient/%d: %+v %v", i+1, p, set, err)
			}
			if n := rt.n.Load() - before; n != 1 {
				t.Errorf("store %d, cold read of Patient/%d: %d round trips, want 1", i+1, p, n)
			}
		}
		before := rt.n.Load()
		for p := range patients {
			if _, err := s.ForPatient(ctx, fmt.Sprint("Patient/", p)); err != nil {
				t.Fatal(err)
			}
		}
		if n := rt.n.Load() - before; n != 0 {
			t.Errorf("store %d, warm reads: %d round trips, want 0", i+1, n)
		}
	}
	for i := range patients {
		if _, err := stores[0].Revoke(ctx, fmt.Sprint("c", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range stores[1:] {
		waitFor(t, 2*time.Second, fmt.Sprintf("revocations seen by store %d", i+1), func() bool {
			for p := range patients {
				set, err := s.ForPatient(ctx, fmt.Sprint("Patient/", p))
				if err != nil || len(set.Consents) != 0 {
					return false
				}
			}
			return true
		})
	}
	// Grants and agreements reach the other caches too.
	now := time.Now()
	g, err := access.NewGrant("Practitioner/7", "Patient/3", "unconscious patient in the emergency room", "Practitioner/1", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := stores[1].ActiveGrant(ctx, "Practitioner/7", "Patient/3", now); err != nil || ok {
		t.Fatalf("grant before it was given: %v %v", ok, err)
	}
	stored, err := stores[0].PutGrant(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "grant seen", func() bool {
		_, ok, err := stores[1].ActiveGrant(ctx, "Practitioner/7", "Patient/3", now.Add(time.Second))
		return err == nil && ok
	})
	if list, err := stores[2].ListGrants(ctx, "Practitioner/7", ""); err != nil || len(list) != 1 {
		t.Errorf("grants of the subject: %+v %v", list, err)
	}
	if _, err := stores[2].RevokeGrant(ctx, stored.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "grant revocation seen", func() bool {
		_, ok, err := stores[1].ActiveGrant(ctx, "Practitioner/7", "Patient/3", now.Add(time.Second))
		return err == nil && !ok
	})
	a := access.Agreement{ClientID: "app-1", Vendor: "Vendor", BAASigned: true, BAAExpires: now.Add(24 * time.Hour)}
	if _, err := stores[1].GetAgreement(ctx, "app-1"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("agreement before it was put: %v", err)
	}
	if _, err := stores[0].PutAgreement(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "agreement seen", func() bool {
		got, err := stores[1].GetAgreement(ctx, "app-1")
		return err == nil && got.Vendor == "Vendor"
	})
	if _, err := stores[0].RevokeAgreement(ctx, "app-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "agreement revocation seen", func() bool {
		got, err := stores[1].GetAgreement(ctx, "app-1")
		return err == nil && got.Revoked
	})
}

// testTopologySubscriptionLost: killing the pub/sub connections on every
// data node drops the cache, which is refilled once all subscriptions are
// back.
func testTopologySubscriptionLost(t *testing.T, topo topology) {
	ctx := context.Background()
	client, rt := topo.client(t)
	s := newRedis(t, client, "", consentstore.WithMinReplicasAck(1))
	for i := range 10 {
		if _, err := s.Put(ctx, denyConsent(t, fmt.Sprint("c", i), fmt.Sprint("Patient/", i))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ForPatient(ctx, fmt.Sprint("Patient/", i)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Patients != 10 {
		t.Fatalf("cache holds %d patients, want 10", st.Patients)
	}
	// Kill the subscriptions of one node only: the cache is dropped all the same.
	killed := int64(0)
	for _, addr := range topo.nodes() {
		admin := redis.NewClient(&redis.Options{Addr: addr})
		n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		admin.Close()
		if err != nil {
			t.Fatalf("CLIENT KILL TYPE pubsub on %s: %v", addr, err)
		}
		killed += n
		if n > 0 {
			break
		}
	}
	if killed == 0 {
		t.Fatal("no pub/sub connection found on any node")
	}
	waitFor(t, 2*time.Second, "cache flushed", func() bool { return s.Stats().Flushes >= st.Flushes+2 })
	waitFor(t, 2*time.Second, "resubscribed", func() bool { return s.Stats().Subscribed })
	if got := s.Stats().Patients; got != 0 {
		t.Errorf("cache holds %d patients after the subscription was dropped", got)
	}
	before := rt.n.Load()
	if _, err := s.ForPatient(ctx, "Patient/3"); err != nil {
		t.Fatal(err)
	}
	if n := rt.n.Load() - before; n != 1 {
		t.Errorf("read after the flush: %d round trips, want 1 (from Redis)", n)
	}
}

// testTopologyWait: with one replica per master, a write waiting for one
// replica is acknowledged, one waiting for two fails as unavailable.
func testTopologyWait(t *testing.T, topo topology) {
	ctx := context.Background()
	client, _ := topo.client(t)
	prefix := fmt.Sprintf("wait%d", prefixSeq.Add(1))
	one := newRedis(t, client, prefix, consentstore.WithMinReplicasAck(1))
	two := newRedis(t, client, prefix, consentstore.WithMinReplicasAck(2))
	if _, err := one.Put(ctx, denyConsent(t, "c1", "Patient/1")); err != nil {
		t.Fatalf("put acknowledged by one replica: %v", err)
	}
	writes := []struct {
		name string
		do   func() error
	}{
		{"put", func() error { _, err := two.Put(ctx, denyConsent(t, "c2", "Patient/2")); return err }},
		{"revoke", func() error { _, err := two.Revoke(ctx, "c1"); return err }},
		{"grant", func() error {
			g, err := access.NewGrant("Practitioner/7", "Patient/3", "unconscious patient in the emergency room", "Practitioner/1", 0, time.Now())
			if err != nil {
				return err
			}
			_, err = two.PutGrant(ctx, g)
			return err
		}},
		{"token revocation", func() error {
			_, err := two.RevokeToken(ctx, access.Revocation{JTI: "jti-1", Until: time.Now().Add(time.Hour), RevokedBy: "admin", RevokedAt: time.Now()})
			return err
		}},
		{"agreement", func() error {
			_, err := two.PutAgreement(ctx, access.Agreement{ClientID: "app-2", Vendor: "V", BAASigned: true, BAAExpires: time.Now().Add(time.Hour)})
			return err
		}},
	}
	for _, w := range writes {
		err := w.do()
		if !errors.Is(err, consentstore.ErrNotReplicated) || !errors.Is(err, consentstore.ErrUnavailable) {
			t.Errorf("%s waiting for 2 replicas of 1: %v, want ErrNotReplicated and ErrUnavailable", w.name, err)
		}
	}
}
