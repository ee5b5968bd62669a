package consentstore_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestRedisScale measures the store at scale on a single server and on a
// Cluster (3+3, writes waiting for one replica): Put throughput, Redis
// memory per consent, PDP heap per cached patient, Check latency warm (no
// round trip) and cold (exactly one), and how fast a revocation through
// one of three PDP replicas is seen by the two others. It runs only when
// CHAPERONE_SCALE_CONSENTS is set (e.g. 100000); bench/README.md has the
// figures.
func TestRedisScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CHAPERONE_SCALE_CONSENTS"))
	if n <= 0 {
		t.Skip("set CHAPERONE_SCALE_CONSENTS to run the scale figures")
	}
	topos := []string{"single", "cluster"}
	if v := os.Getenv("CHAPERONE_SCALE_TOPOLOGIES"); v != "" {
		topos = strings.Split(v, ",")
	}
	for _, name := range topos {
		t.Run(name, func(t *testing.T) {
			var (
				newClient func() (redis.UniversalClient, *roundTrips)
				masters   func() []string
				acks      int
			)
			switch name {
			case "single":
				addr, _ := redistest.Start(t)
				newClient = func() (redis.UniversalClient, *roundTrips) {
					rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
					h := &roundTrips{}
					rdb.AddHook(h)
					t.Cleanup(func() { rdb.Close() })
					return rdb, h
				}
				masters = func() []string { return []string{addr} }
			case "cluster":
				c := redistest.StartCluster(t)
				acks = 1
				newClient = func() (redis.UniversalClient, *roundTrips) {
					rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), PoolSize: 64, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
					h := &roundTrips{}
					rdb.AddHook(h)
					t.Cleanup(func() { rdb.Close() })
					return rdb, h
				}
				masters = func() []string {
					var out []string
					for _, a := range c.Addrs() {
						rdb := redis.NewClient(&redis.Options{Addr: a})
						info, _ := rdb.Info(context.Background(), "replication").Result()
						rdb.Close()
						if strings.Contains(info, "role:master") {
							out = append(out, a)
						}
					}
					return out
				}
			default:
				t.Fatalf("unknown topology %q", name)
			}
			scale(t, n, newClient, masters, acks)
		})
	}
}

func usedMemory(t *testing.T, addrs []string) int64 {
	var sum int64
	for _, a := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		info, err := rdb.Info(context.Background(), "memory").Result()
		rdb.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				x, _ := strconv.ParseInt(v, 10, 64)
				sum += x
			}
		}
	}
	return sum
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func pct(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func scale(t *testing.T, n int, newClient func() (redis.UniversalClient, *roundTrips), masters func() []string, acks int) {
	ctx := context.Background()
	// A loaded machine delays replies and replica acknowledgements.
	newRedis := func(t *testing.T, c redis.UniversalClient, prefix string, opts ...consentstore.RedisOption) *consentstore.Redis {
		return newRedis(t, c, prefix, append([]consentstore.RedisOption{consentstore.WithRedisTimeout(2 * time.Second),
			consentstore.WithPingInterval(time.Second)}, opts...)...)
	}
	prefix := "scale"
	loader, _ := newClient()
	w := newRedis(t, loader, prefix, consentstore.WithMinReplicasAck(acks), consentstore.WithCache(0, 0))
	memBefore := usedMemory(t, masters())

	// Put throughput: 64 concurrent writers (what an importer with 64
	// requests in flight reaches, less the RPC).
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := w.Put(ctx, denyConsent(t, fmt.Sprint("c", i), fmt.Sprint("Patient/", i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	took := time.Since(start)
	memAfter := usedMemory(t, masters())
	t.Logf("put %d consents (64 writers, min replicas ack %d): %s, %.0f/s; Redis used_memory on the masters %+.1f MiB, %.0f bytes per consent (one copy; each replica holds another)",
		n, acks, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(memAfter-memBefore)/(1<<20), float64(memAfter-memBefore)/float64(n))

	// PDP heap with the cache full (one entry per patient, up to 100k).
	cached := min(n, 100_000)
	h0 := heap()
	pc, prt := newClient()
	pdpStore := newRedis(t, pc, prefix, consentstore.WithCache(cached, time.Hour))
	eng := newEngine(t, pdpStore)
	for i := range cached {
		if r := eng.Check(ctx, checkRequest(fmt.Sprint("Patient/", i))); firstCode(r) != "CONSENT_DENY" {
			t.Fatalf("Patient/%d: %v", i, r)
		}
	}
	h1 := heap()
	t.Logf("PDP heap with %d cached patients: %+.1f MiB, %.0f bytes per entry", pdpStore.Stats().Patients, float64(h1-h0)/(1<<20), float64(h1-h0)/float64(cached))

	// Warm Checks (every patient cached: 0 round trips).
	const samples = 50_000
	lat := make([]time.Duration, 0, samples)
	before := prt.n.Load()
	for i := range samples {
		req := checkRequest(fmt.Sprint("Patient/", (i*7919)%cached))
		s := time.Now()
		eng.Check(ctx, req)
		lat = append(lat, time.Since(s))
	}
	warmTrips := float64(prt.n.Load()-before) / samples
	t.Logf("Check warm: p50 %s p99 %s, %.3f round trips per Check, cache dropped %d times since the start", pct(lat, .5), pct(lat, .99), warmTrips, pdpStore.Stats().Flushes)

	// Cold Checks (a one-entry cache and another patient each time: the
	// consents and grants read in exactly 1 round trip), over all n patients.
	cc, crt := newClient()
	coldStore := newRedis(t, cc, prefix, consentstore.WithCache(1, time.Hour))
	coldEng := newEngine(t, coldStore)
	coldEng.Check(ctx, checkRequest("Patient/none")) // opens a connection; not a sampled patient
	lat = lat[:0]
	const coldSamples = 20_000
	before = crt.n.Load()
	for i := range coldSamples {
		req := checkRequest(fmt.Sprint("Patient/", (i*104729)%n))
		s := time.Now()
		if r := coldEng.Check(ctx, req); firstCode(r) != "CONSENT_DENY" {
			t.Fatalf("cold check: %v", r)
		}
		lat = append(lat, time.Since(s))
	}
	coldTrips := float64(crt.n.Load()-before) / coldSamples
	t.Logf("Check cold: p50 %s p99 %s, %.4f round trips per Check", pct(lat, .5), pct(lat, .99), coldTrips)
	// A reconnection or a pool's health check may add one now and then.
	if warmTrips > 0.001 || coldTrips < 1 || coldTrips > 1.001 {
		t.Errorf("round trips warm %.4f, cold %.4f; want 0 and 1", warmTrips, coldTrips)
	}

	// Three PDP replicas: a revocation through one, seen by the two others.
	var reps []*consentstore.Redis
	for range 3 {
		c, _ := newClient()
		reps = append(reps, newRedis(t, c, prefix, consentstore.WithMinReplicasAck(acks)))
	}
	const revocations = 500
	lat = lat[:0]
	var revLat []time.Duration
	for i := range revocations {
		p := fmt.Sprint("Patient/", i)
		for _, r := range reps[1:] {
			if set, err := r.ForPatient(ctx, p); err != nil || len(set.Consents) != 1 {
				t.Fatalf("%s before the revocation: %+v %v", p, set, err)
			}
		}
		s := time.Now()
		if _, err := reps[0].Revoke(ctx, fmt.Sprint("c", i)); err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		revLat = append(revLat, acked.Sub(s))
		for _, r := range reps[1:] {
			for k := 0; ; k++ {
				set, err := r.ForPatient(ctx, p)
				if err == nil && len(set.Consents) == 0 {
					break
				}
				if k > 1_000_000 {
					t.Fatalf("%s: revocation not seen", p)
				}
				runtime.Gosched()
			}
		}
		lat = append(lat, time.Since(s))
	}
	t.Logf("revocation through one of 3 PDP replicas: acknowledged p50 %s p99 %s; seen by both others (from the start of Revoke) p50 %s p99 %s",
		pct(revLat, .5), pct(revLat, .99), pct(lat, .5), pct(lat, .99))
}
