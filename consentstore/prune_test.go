package consentstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

type pruner interface {
	consentstore.Store
	PruneRevoked(ctx context.Context, before time.Time, dryRun bool) (consentstore.PruneReport, error)
}

// testPruneRevoked: consents revoked in 2021 and 2026 and one revoked,
// put again and still active; a prune before 2022 removes only the 2021
// revocation (a dry run first removes nothing), the others stay readable.
func testPruneRevoked(t *testing.T, s pruner, clock *atomic.Int64) {
	ctx := context.Background()
	at := func(y int) { clock.Store(time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()) }
	at(2021)
	for _, id := range []string{"old", "new", "back", "live"} {
		if _, err := s.Put(ctx, denyConsent(t, id, "Patient/p1")); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"old", "back"} {
		if _, err := s.Revoke(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	at(2026)
	if _, err := s.Revoke(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, "old"); err != nil { // revoking again keeps the first time
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, denyConsent(t, "back", "Patient/p1")); err != nil {
		t.Fatal(err)
	}
	cut := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	dry, err := s.PruneRevoked(ctx, cut, true)
	if err != nil || dry.Consents != 1 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if recs, _, _ := s.List(ctx, "Patient/p1"); len(recs) != 4 {
		t.Fatalf("the dry run removed records: %d left", len(recs))
	}
	rep, err := s.PruneRevoked(ctx, cut, false)
	if err != nil || rep.Consents != 1 {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	if _, err := s.Get(ctx, "old"); !errors.Is(err, consentstore.ErrNotFound) {
		t.Errorf("pruned consent still there: %v", err)
	}
	recs, _, err := s.List(ctx, "Patient/p1")
	if err != nil || len(recs) != 3 {
		t.Fatalf("after prune: %d records %v", len(recs), err)
	}
	set, err := s.ForPatient(ctx, "Patient/p1")
	if err != nil || len(set.Consents) != 2 {
		t.Errorf("active consents after prune: %d %v", len(set.Consents), err)
	}
	if rep, err := s.PruneRevoked(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), false); err != nil || rep.Consents != 1 {
		t.Errorf("prune before 2030: %+v %v (want the 2026 revocation only)", rep, err)
	}
}

func TestMemoryPruneRevoked(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	m := consentstore.NewMemory(consentstore.WithMemoryClock(now))
	testPruneRevoked(t, m, &clock)

	a := access.NewMemory(access.WithMemoryClock(now))
	ctx := context.Background()
	clock.Store(time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	g, _ := access.NewGrant("Practitioner/p1", "Patient/p1", "patient unconscious, records needed", "", time.Hour, now())
	if _, err := a.PutGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"gone", "kept"} {
		if _, err := a.PutAgreement(ctx, access.Agreement{ClientID: c, Vendor: "v", BAASigned: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.RevokeAgreement(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	grants, agreements, err := a.PruneRevoked(ctx, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), false)
	if err != nil || grants != 1 || agreements != 1 {
		t.Errorf("access prune: %d grants, %d agreements, %v", grants, agreements, err)
	}
	if _, err := a.GetAgreement(ctx, "kept"); err != nil {
		t.Errorf("an agreement in force was pruned: %v", err)
	}
}

func TestRedisPruneRevoked(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	s := newRedis(t, client, "", consentstore.WithClock(now), consentstore.WithCache(0, 0))
	testPruneRevoked(t, s, &clock)

	ctx := context.Background()
	clock.Store(time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	for _, c := range []string{"gone", "kept"} {
		if _, err := s.PutAgreement(ctx, access.Agreement{ClientID: c, Vendor: "v", BAASigned: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RevokeAgreement(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	rep, err := s.PruneRevoked(ctx, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), false)
	if err != nil || rep.Agreements != 1 {
		t.Errorf("agreements pruned: %+v %v", rep, err)
	}
	if _, err := s.GetAgreement(ctx, "gone"); !errors.Is(err, access.ErrNotFound) {
		t.Errorf("pruned agreement: %v", err)
	}
	if _, err := s.GetAgreement(ctx, "kept"); err != nil {
		t.Errorf("agreement in force: %v", err)
	}
}
