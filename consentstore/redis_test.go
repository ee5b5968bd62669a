package consentstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/consentstore/storetest"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

var prefixSeq atomic.Int64

// roundTrips counts the network round trips of a client: one per command
// or pipeline (a MULTI/EXEC read is one).
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// newClient returns a client of addr with short timeouts, closed with the test.
func newClient(t testing.TB, addr string) (*redis.Client, *roundTrips) {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, MaxRetries: 1, PoolSize: 16,
	})
	h := &roundTrips{}
	c.AddHook(h)
	t.Cleanup(func() { _ = c.Close() })
	return c, h
}

// newRedis returns a store on client under a prefix of its own, once its
// invalidation subscription is live.
func newRedis(t testing.TB, client redis.UniversalClient, prefix string, opts ...consentstore.RedisOption) *consentstore.Redis {
	t.Helper()
	if prefix == "" {
		prefix = fmt.Sprintf("t%d", prefixSeq.Add(1))
	}
	opts = append([]consentstore.RedisOption{consentstore.WithRedisPrefix(prefix), consentstore.WithRedisTimeout(300 * time.Millisecond),
		consentstore.WithPingInterval(200 * time.Millisecond)}, opts...)
	s, err := consentstore.NewRedis(client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, 5*time.Second, "subscription", func() bool { return s.Stats().Subscribed })
	return s
}

// conformanceTimeout bounds each Redis operation of the conformance suites:
// they are about answers, not timeouts, and a busy CI machine can take
// longer than the 300 ms the fault tests use.
var conformanceTimeout = consentstore.WithRedisTimeout(3 * time.Second)

// waitFor polls cond every 5ms until it holds or d has passed.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustParseConsent(t testing.TB, js string) *fhirconsent.Consent {
	t.Helper()
	c, err := fhirconsent.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// denyConsent is a restriction of patient's record from Organization/o1:
// it denies even that organization's own care (a general opt-out would
// govern only disclosures outside it).
func denyConsent(t testing.TB, id, patient string) *fhirconsent.Consent {
	return mustParseConsent(t, fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active","dateTime":"2020-01-01","patient":{"reference":%q},"provision":{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/o1"}}]}}`, id, patient))
}

func TestRedis(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) consentstore.Store {
		return newRedis(t, client, "", consentstore.WithLimits(cfg.Limits), consentstore.WithClock(cfg.Now), conformanceTimeout)
	})
}

func TestRedisEncrypted(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	key := []byte("0123456789abcdef0123456789abcdef")
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) consentstore.Store {
		return newRedis(t, client, "", consentstore.WithEncryptionKey(key), consentstore.WithLimits(cfg.Limits), consentstore.WithClock(cfg.Now), conformanceTimeout)
	})

	ctx := context.Background()
	s := newRedis(t, client, "enc", consentstore.WithEncryptionKey(key))
	if _, err := s.Put(ctx, denyConsent(t, "secret", "Patient/9")); err != nil {
		t.Fatal(err)
	}
	raw, err := client.HGet(ctx, "enc:{Patient/9}:consents", "secret").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "resourceType") || strings.Contains(raw, "deny") {
		t.Errorf("payload stored in clear: %q", raw)
	}
	if got, err := s.Get(ctx, "secret"); err != nil || got.Consent.Patient != "Patient/9" {
		t.Errorf("get with the key: %+v %v", got, err)
	}
	noKey := newRedis(t, client, "enc")
	if _, err := noKey.Get(ctx, "secret"); !errors.Is(err, consentstore.ErrSealed) {
		t.Errorf("get without the key: %v", err)
	}
	otherKey := newRedis(t, client, "enc", consentstore.WithEncryptionKey([]byte("fedcba9876543210fedcba9876543210")))
	if _, err := otherKey.ForPatient(ctx, "Patient/9"); !errors.Is(err, consentstore.ErrSealed) {
		t.Errorf("for patient with another key: %v", err)
	}
	if _, err := consentstore.NewRedis(client, consentstore.WithEncryptionKey([]byte("short"))); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

func TestRedisKeys(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	ctx := context.Background()
	s := newRedis(t, client, "k")
	if _, err := s.Put(ctx, denyConsent(t, "c1", "http://fhir.example/Patient/52")); err != nil {
		t.Fatal(err)
	}
	keys, err := client.Keys(ctx, "k:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"k:{Patient/52}:version": true, "k:{Patient/52}:consents": true, "k:consent:{c1}": true}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		delete(want, k)
	}
	if len(want) > 0 {
		t.Errorf("missing keys %v", want)
	}
}

// TestRedisCache: a warm read makes no round trip, a cold one exactly one;
// a write through another replica is seen at once.
func TestRedisCache(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	c1, rt1 := newClient(t, addr)
	c2, _ := newClient(t, addr)
	a := newRedis(t, c1, "cache")
	b := newRedis(t, c2, "cache")

	if _, err := b.Put(ctx, denyConsent(t, "c1", "Patient/1")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ForPatient(ctx, "Patient/0"); err != nil { // opens a connection
		t.Fatal(err)
	}
	before := rt1.n.Load()
	set, err := a.ForPatient(ctx, "Patient/1")
	if err != nil || len(set.Consents) != 1 {
		t.Fatalf("cold read: %+v %v", set, err)
	}
	if n := rt1.n.Load() - before; n != 1 {
		t.Errorf("cold read: %d round trips, want 1", n)
	}
	before = rt1.n.Load()
	for range 100 {
		if _, err := a.ForPatient(ctx, "Patient/1"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.ActiveGrant(ctx, "Practitioner/1", "Patient/1", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if n := rt1.n.Load() - before; n != 0 {
		t.Errorf("warm reads: %d round trips, want 0", n)
	}
	if _, err := b.Revoke(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "revocation seen by the other replica", func() bool {
		s, err := a.ForPatient(ctx, "Patient/1")
		return err == nil && len(s.Consents) == 0
	})
	// The revoked consent stays readable as revoked (history).
	rec, err := a.Get(ctx, "c1")
	if err != nil || !rec.Revoked {
		t.Errorf("revoked record: %+v %v", rec, err)
	}
}

// TestRedisPubSubDropped: when the invalidation connection is killed the
// cache is dropped (invalidations may have been missed), then refilled once
// the subscription is back.
func TestRedisPubSubDropped(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	client, rt := newClient(t, addr)
	admin, _ := newClient(t, addr)
	s := newRedis(t, client, "drop")
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
	if n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub: %d %v", n, err)
	}
	waitFor(t, 2*time.Second, "cache flushed", func() bool { return s.Stats().Flushes >= st.Flushes+2 })
	if got := s.Stats().Patients; got != 0 {
		t.Errorf("cache holds %d patients after the subscription was dropped", got)
	}
	waitFor(t, 2*time.Second, "resubscribed", func() bool { return s.Stats().Subscribed })
	before := rt.n.Load()
	if _, err := s.ForPatient(ctx, "Patient/3"); err != nil {
		t.Fatal(err)
	}
	if n := rt.n.Load() - before; n != 1 {
		t.Errorf("read after the flush: %d round trips, want 1 (from Redis)", n)
	}
}

// TestRedisUnavailable: with Redis gone and no trustworthy cache entry,
// reads fail with ErrUnavailable within the timeout; after a restart they
// work again without a new store.
func TestRedisUnavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	client, _ := newClient(t, srv.Addr())
	s := newRedis(t, client, "down")
	if _, err := s.Put(ctx, denyConsent(t, "c1", "Patient/1")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	waitFor(t, 2*time.Second, "subscription loss noticed", func() bool { return !s.Stats().Subscribed })
	start := time.Now()
	for _, p := range []string{"Patient/1", "Patient/2"} {
		if _, err := s.ForPatient(ctx, p); !errors.Is(err, consentstore.ErrUnavailable) {
			t.Errorf("for patient %s with redis down: %v", p, err)
		}
	}
	if _, _, err := s.ActiveGrant(ctx, "Practitioner/1", "Patient/1", time.Now()); !errors.Is(err, consentstore.ErrUnavailable) {
		t.Errorf("active grant with redis down: %v", err)
	}
	if _, err := s.GetAgreement(ctx, "app"); !errors.Is(err, consentstore.ErrUnavailable) {
		t.Errorf("agreement with redis down: %v", err)
	}
	if _, err := s.Put(ctx, denyConsent(t, "c2", "Patient/1")); !errors.Is(err, consentstore.ErrUnavailable) {
		t.Errorf("put with redis down: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("failing reads took %s", d)
	}
	// After failed reads in a row, reads fail at once without waiting for
	// the timeout.
	fast := time.Now()
	if _, err := s.ForPatient(ctx, "Patient/3"); !errors.Is(err, consentstore.ErrBreakerOpen) || !errors.Is(err, consentstore.ErrUnavailable) {
		t.Errorf("read with the breaker open: %v", err)
	}
	if d := time.Since(fast); d > 50*time.Millisecond {
		t.Errorf("a read with the breaker open took %s", d)
	}
	srv.Restart()
	restarted := time.Now()
	waitFor(t, 2*time.Second, "recovery", func() bool {
		_, err := s.ForPatient(ctx, "Patient/1")
		return err == nil && s.Stats().Subscribed
	})
	t.Logf("recovered %s after the restart", time.Since(restarted).Round(time.Millisecond))
}

func TestRedisGrants(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	c1, _ := newClient(t, addr)
	c2, _ := newClient(t, addr)
	a := newRedis(t, c1, "g")
	b := newRedis(t, c2, "g")
	now := time.Now()
	g, err := access.NewGrant("Practitioner/7", "Patient/52", "unconscious patient in the emergency room", "Practitioner/1", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.ActiveGrant(ctx, "Practitioner/7", "Patient/52", now); err != nil || ok {
		t.Fatalf("grant before it was given: %v %v", ok, err)
	}
	stored, err := b.PutGrant(ctx, g)
	if err != nil || stored.ID == "" {
		t.Fatalf("put grant: %+v %v", stored, err)
	}
	waitFor(t, time.Second, "grant seen by the other replica", func() bool {
		_, ok, err := a.ActiveGrant(ctx, "Practitioner/7", "Patient/52", now.Add(time.Second))
		return err == nil && ok
	})
	if _, ok, _ := a.ActiveGrant(ctx, "Practitioner/7", "Patient/52", now.Add(5*time.Hour)); ok {
		t.Error("grant active after its expiry")
	}
	if _, ok, _ := a.ActiveGrant(ctx, "Practitioner/8", "Patient/52", now.Add(time.Second)); ok {
		t.Error("grant active for another subject")
	}
	pttl, err := c1.PTTL(ctx, "g:{Patient/52}:grants").Result()
	if err != nil || pttl <= 3*time.Hour || pttl > 4*time.Hour+time.Second {
		t.Errorf("grants key TTL %s %v, want about 4h", pttl, err)
	}
	for _, q := range [][2]string{{"Practitioner/7", ""}, {"", "Patient/52"}, {"Practitioner/7", "Patient/52"}} {
		list, err := a.ListGrants(ctx, q[0], q[1])
		if err != nil || len(list) != 1 || list[0].ID != stored.ID || list[0].Reason != g.Reason {
			t.Errorf("list %v: %+v %v", q, list, err)
		}
	}
	if _, err := a.ListGrants(ctx, "", ""); err == nil {
		t.Error("list without subject or patient")
	}
	revoked, err := a.RevokeGrant(ctx, stored.ID)
	if err != nil || !revoked.Revoked {
		t.Fatalf("revoke: %+v %v", revoked, err)
	}
	waitFor(t, time.Second, "revocation seen by the other replica", func() bool {
		_, ok, err := b.ActiveGrant(ctx, "Practitioner/7", "Patient/52", now.Add(time.Second))
		return err == nil && !ok
	})
	if _, err := a.RevokeGrant(ctx, "bg-none"); !errors.Is(err, access.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	expired := g
	expired.ExpiresAt = now.Add(-time.Minute)
	if _, err := a.PutGrant(ctx, expired); err == nil {
		t.Error("an expired grant was stored")
	}
}

func TestRedisAgreements(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	c1, rt1 := newClient(t, addr)
	c2, _ := newClient(t, addr)
	a := newRedis(t, c1, "ag")
	b := newRedis(t, c2, "ag")
	if _, err := a.GetAgreement(ctx, "app1"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	in := access.Agreement{ClientID: "app1", Vendor: "Acme", Tier: "business-associate", BAASigned: true,
		BAAExpires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Purposes: []string{"TREAT"}, ResourceTypes: []string{"Observation"}}
	if _, err := b.PutAgreement(ctx, in); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "agreement seen by the other replica (negative entry invalidated)", func() bool {
		got, err := a.GetAgreement(ctx, "app1")
		return err == nil && got.Vendor == "Acme" && got.BAAExpires.Equal(in.BAAExpires) && got.Covers("TREAT", "Observation")
	})
	before := rt1.n.Load()
	if _, err := a.GetAgreement(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	if n := rt1.n.Load() - before; n != 0 {
		t.Errorf("warm agreement read: %d round trips", n)
	}
	if got, err := b.RevokeAgreement(ctx, "app1"); err != nil || !got.Revoked || got.Vendor != "Acme" {
		t.Fatalf("revoke: %+v %v", got, err)
	}
	waitFor(t, time.Second, "revocation seen by the other replica", func() bool {
		got, err := a.GetAgreement(ctx, "app1")
		return err == nil && got.Revoked && !got.ActiveAt(time.Now())
	})
	if _, err := a.RevokeAgreement(ctx, "none"); !errors.Is(err, access.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	if _, err := a.PutAgreement(ctx, access.Agreement{ClientID: "x"}); err == nil {
		t.Error("an agreement without vendor was stored")
	}
}
