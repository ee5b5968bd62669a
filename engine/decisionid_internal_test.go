package engine

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestDecisionIDs(t *testing.T) {
	t.Parallel()
	g := &decisionIDs{now: time.Now}
	seen := map[string]bool{}
	prev := ""
	before := time.Now()
	for range 10000 {
		id := g.next()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v, want 7 RFC 4122", id, u.Version(), u.Variant())
		}
		if id != u.String() {
			t.Fatalf("%q is not canonical (%q)", id, u.String())
		}
		if ts := time.Unix(u.Time().UnixTime()); ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Fatalf("%s: time %v", id, ts)
		}
		if id <= prev {
			t.Fatalf("ids not increasing: %s after %s", id, prev)
		}
		if seen[id] {
			t.Fatalf("duplicate %s", id)
		}
		seen[id], prev = true, id
	}

	// A stopped clock and concurrent callers still get distinct ids.
	frozen := time.Unix(1700000000, 0)
	g = &decisionIDs{now: func() time.Time { return frozen }}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ids := map[string]bool{}
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				id := g.next()
				mu.Lock()
				if ids[id] {
					t.Errorf("duplicate %s", id)
				}
				ids[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// BenchmarkDecisionID compares the engine's generator with uuid.NewV7,
// which it replaced.
func BenchmarkDecisionID(b *testing.B) {
	b.Run("gen=engine", func(b *testing.B) {
		g := &decisionIDs{now: time.Now}
		b.ReportAllocs()
		for b.Loop() {
			_ = g.next()
		}
	})
	b.Run("gen=uuid.NewV7", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			id, _ := uuid.NewV7()
			_ = id.String()
		}
	})
}
