// Package storetest is the behaviour every [consentstore.Store] must have,
// as one test suite: an implementation's test calls [Run] with a function
// that returns a new, empty store.
//
//	func TestMemory(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, cfg storetest.Config) consentstore.Store {
//			return consentstore.NewMemory(consentstore.WithMemoryLimits(cfg.Limits), consentstore.WithMemoryClock(cfg.Now))
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// Config is what a store under test is made with: the limits of Put and
// the clock that consent dates are checked against.
type Config struct {
	Limits consentstore.Limits
	Now    func() time.Time
}

// Clock is the instant the suite's clock stands at.
var Clock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs the store suite; newStore returns an empty store made with cfg
// for each test.
func Run(t *testing.T, newStore func(t *testing.T, cfg Config) consentstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s consentstore.Store)
	}{
		{"put and get", testPutGet},
		{"generated id", testGeneratedID},
		{"replace", testReplace},
		{"replace for another patient is refused", testOtherPatient},
		{"if version", testIfVersion},
		{"if version under contention", testIfVersionContention},
		{"id claimed by one patient under contention", testClaimContention},
		{"invalid id", testInvalidID},
		{"dated in the future", testFutureDated},
		{"not found", testNotFound},
		{"list", testList},
		{"revoke", testRevoke},
		{"put after revoke", testPutAfterRevoke},
		{"for patient", testForPatient},
		{"versions change", testVersions},
		{"concurrent", testConcurrent},
		{"canceled context", testCanceled},
	}
	cfg := Config{Now: func() time.Time { return Clock }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t, cfg))
		})
	}
	t.Run("limits", func(t *testing.T) {
		t.Parallel()
		testLimits(t, newStore)
	})
	t.Run("against a model", func(t *testing.T) {
		t.Parallel()
		testModel(t, newStore)
	})
}

func consent(t *testing.T, id, patient string) *fhirconsent.Consent {
	t.Helper()
	idPart := ""
	if id != "" {
		idPart = fmt.Sprintf(`"id":%q,`, id)
	}
	c, err := fhirconsent.Parse(fmt.Appendf(nil, `{"resourceType":"Consent",%s"status":"active","patient":{"reference":%q},"provision":{"type":"permit"}}`, idPart, patient))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func put(t *testing.T, s consentstore.Store, c *fhirconsent.Consent) consentstore.Record {
	t.Helper()
	rec, err := s.Put(context.Background(), c)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	return rec
}

func testPutGet(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	rec := put(t, s, consent(t, "c1", "Patient/1"))
	if rec.Consent.ID != "c1" || rec.Version == "" || rec.Consent.Version != rec.Version || rec.Revoked {
		t.Fatalf("put record %+v", rec)
	}
	got, err := s.Get(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Consent.ID != "c1" || got.Version != rec.Version || got.Consent.Patient != "Patient/1" || len(got.Consent.Raw) == 0 {
		t.Errorf("get record %+v", got)
	}
	if ref := got.Consent.RefSlice(); len(ref) != 1 || ref[0].ID != "c1" || ref[0].Version != rec.Version {
		t.Errorf("ref %+v", ref)
	}
}

func testGeneratedID(t *testing.T, s consentstore.Store) {
	a := put(t, s, consent(t, "", "Patient/1"))
	b := put(t, s, consent(t, "", "Patient/1"))
	if a.Consent.ID == "" || a.Consent.ID == b.Consent.ID {
		t.Fatalf("ids %q %q", a.Consent.ID, b.Consent.ID)
	}
	got, err := s.Get(context.Background(), a.Consent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got.Consent.Raw), a.Consent.ID) {
		t.Errorf("raw JSON lacks the generated id: %s", got.Consent.Raw)
	}
}

func testReplace(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	a := put(t, s, consent(t, "c1", "Patient/1"))
	b := put(t, s, consent(t, "c1", "Patient/1"))
	if a.Version == b.Version {
		t.Errorf("version not bumped: %s", a.Version)
	}
	recs, _, err := s.List(ctx, "Patient/1")
	if err != nil || len(recs) != 1 {
		t.Fatalf("list %v %v", recs, err)
	}
}

func testOtherPatient(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	first := put(t, s, consent(t, "c1", "Patient/1"))
	for _, step := range []string{"stored", "revoked"} {
		if step == "revoked" {
			if _, err := s.Revoke(ctx, "c1"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Put(ctx, consent(t, "c1", "Patient/2")); !errors.Is(err, consentstore.ErrOtherPatient) {
			t.Fatalf("%s: put of patient 1's id for patient 2: %v, want ErrOtherPatient", step, err)
		}
		got, err := s.Get(ctx, "c1")
		if err != nil || got.Consent.Patient != "Patient/1" || (step == "stored" && got.Version != first.Version) {
			t.Errorf("%s: record after the refused put: %+v %v", step, got, err)
		}
		two, err := s.ForPatient(ctx, "Patient/2")
		if err != nil || len(two.Consents) != 0 {
			t.Errorf("%s: patient 2 has %d consents (%v)", step, len(two.Consents), err)
		}
		if recs, _, err := s.List(ctx, "Patient/1"); err != nil || len(recs) != 1 {
			t.Errorf("%s: patient 1 has %d records (%v)", step, len(recs), err)
		}
	}
	one, err := s.ForPatient(ctx, "Patient/1")
	if err != nil || len(one.Consents) != 0 {
		t.Errorf("revoked consent of patient 1 is back: %+v %v", one, err)
	}
}

func testIfVersion(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	if _, err := s.Put(ctx, consent(t, "c1", "Patient/1"), consentstore.IfVersion("1")); !errors.Is(err, consentstore.ErrVersionMismatch) {
		t.Fatalf("if-version on an absent record: %v, want ErrVersionMismatch", err)
	}
	if _, err := s.Get(ctx, "c1"); !errors.Is(err, consentstore.ErrNotFound) {
		t.Fatalf("a refused put wrote a record: %v", err)
	}
	a := put(t, s, consent(t, "c1", "Patient/1"))
	b, err := s.Put(ctx, consent(t, "c1", "Patient/1"), consentstore.IfVersion(a.Version))
	if err != nil {
		t.Fatalf("if-version of the stored record: %v", err)
	}
	before, _ := s.ForPatient(ctx, "Patient/1")
	if _, err := s.Put(ctx, consent(t, "c1", "Patient/1"), consentstore.IfVersion(a.Version)); !errors.Is(err, consentstore.ErrVersionMismatch) {
		t.Fatalf("stale if-version: %v, want ErrVersionMismatch", err)
	}
	got, err := s.Get(ctx, "c1")
	if err != nil || got.Version != b.Version {
		t.Errorf("record after a stale put: %+v %v, want version %s", got, err, b.Version)
	}
	after, _ := s.ForPatient(ctx, "Patient/1")
	if before.Version != after.Version {
		t.Errorf("a refused put changed the patient's version: %s → %s", before.Version, after.Version)
	}
	r, err := s.Revoke(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, consent(t, "c1", "Patient/1"), consentstore.IfVersion(r.Version)); err != nil {
		t.Errorf("if-version of a revoked record: %v", err)
	}
}

// testIfVersionContention: writers that all hold the same version race;
// exactly one wins.
func testIfVersionContention(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	a := put(t, s, consent(t, "c1", "Patient/1"))
	const writers = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won, mis int
	)
	for range writers {
		wg.Go(func() {
			_, err := s.Put(ctx, consent(t, "c1", "Patient/1"), consentstore.IfVersion(a.Version))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, consentstore.ErrVersionMismatch):
				mis++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won != 1 || mis != writers-1 {
		t.Errorf("%d writers won and %d were refused, want 1 and %d", won, mis, writers-1)
	}
}

// testClaimContention: writers put the same id for different patients at
// once; exactly one patient gets it.
func testClaimContention(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	const writers = 8
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		won []string
	)
	for w := range writers {
		patient := fmt.Sprintf("Patient/%d", w+1)
		wg.Go(func() {
			_, err := s.Put(ctx, consent(t, "shared", patient))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, patient)
			case !errors.Is(err, consentstore.ErrOtherPatient):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("patients that got the id: %v, want one", won)
	}
	for w := range writers {
		patient := fmt.Sprintf("Patient/%d", w+1)
		recs, _, err := s.List(ctx, patient)
		if err != nil {
			t.Fatal(err)
		}
		if want := patient == won[0]; (len(recs) == 1) != want || len(recs) > 1 {
			t.Errorf("%s has %d records, winner %s", patient, len(recs), won[0])
		}
	}
	if got, err := s.Get(ctx, "shared"); err != nil || got.Consent.Patient != won[0] {
		t.Errorf("get: %+v %v, want patient %s", got, err, won[0])
	}
}

func testInvalidID(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	for _, id := range []string{strings.Repeat("a", 65), "a b", "a/b", "a_b", "ä"} {
		c := consent(t, "ok", "Patient/1").WithID(id, "")
		_, err := s.Put(ctx, c)
		var ie *consentstore.InvalidError
		if !errors.Is(err, consentstore.ErrInvalid) || !errors.As(err, &ie) || ie.Path != "id" {
			t.Errorf("put with id %q: %v, want an InvalidError at id", id, err)
		}
	}
	if recs, _, err := s.List(ctx, "Patient/1"); err != nil || len(recs) != 0 {
		t.Errorf("refused puts stored %d records (%v)", len(recs), err)
	}
	put(t, s, consent(t, strings.Repeat("a", 64), "Patient/1"))
}

func testFutureDated(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	cases := []struct {
		name string
		js   string
		path string // "" when accepted
	}{
		{"R4 now", r4Dated("now", Clock.Format(time.RFC3339)), ""},
		{"R4 within the skew", r4Dated("skew", Clock.Add(4*time.Minute).Format(time.RFC3339)), ""},
		{"R4 beyond the skew", r4Dated("beyond", Clock.Add(6*time.Minute).Format(time.RFC3339)), "dateTime"},
		{"R4 dated 2099", r4Dated("y2099", "2099-01-01"), "dateTime"},
		{"R4 the next day as a date", r4Dated("tomorrow", Clock.AddDate(0, 0, 1).Format(time.DateOnly)), "dateTime"},
		{"R5 dated 2099", `{"resourceType":"Consent","id":"r5","status":"active","subject":{"reference":"Patient/1"},"date":"2099-01-01","decision":"permit"}`, "date"},
		{"R4 validity starting in 2099", `{"resourceType":"Consent","id":"later","status":"active","patient":{"reference":"Patient/1"},"dateTime":"2026-01-01","provision":{"type":"deny","period":{"start":"2099-01-01"}}}`, ""},
		{"R5 provision period in 2099", `{"resourceType":"Consent","id":"r5later","status":"active","subject":{"reference":"Patient/1"},"date":"2026-01-01","decision":"deny","provision":[{"period":{"start":"2099-01-01"}}]}`, ""},
	}
	for _, tc := range cases {
		c, err := fhirconsent.Parse([]byte(tc.js))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, err = s.Put(ctx, c)
		if tc.path == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ie *consentstore.InvalidError
		if !errors.As(err, &ie) || ie.Path != tc.path || !errors.Is(err, consentstore.ErrInvalid) {
			t.Errorf("%s: %v, want an InvalidError at %s", tc.name, err, tc.path)
		}
		if _, err := s.Get(ctx, c.ID); !errors.Is(err, consentstore.ErrNotFound) {
			t.Errorf("%s: refused consent stored (%v)", tc.name, err)
		}
	}
}

func r4Dated(id, date string) string {
	return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active","patient":{"reference":"Patient/1"},"dateTime":%q,"provision":{"type":"permit"}}`, id, date)
}

func testLimits(t *testing.T, newStore func(t *testing.T, cfg Config) consentstore.Store) {
	ctx := context.Background()
	now := func() time.Time { return Clock }
	t.Run("bytes", func(t *testing.T) {
		small := consent(t, "small", "Patient/1")
		s := newStore(t, Config{Limits: consentstore.Limits{MaxBytes: len(small.Raw)}, Now: now})
		put(t, s, small)
		big := consent(t, "bigger-id", "Patient/1")
		if _, err := s.Put(ctx, big); !errors.Is(err, consentstore.ErrLimit) {
			t.Errorf("put of %d bytes with a limit of %d: %v, want ErrLimit", len(big.Raw), len(small.Raw), err)
		}
		if _, err := s.Get(ctx, "bigger-id"); !errors.Is(err, consentstore.ErrNotFound) {
			t.Errorf("refused consent stored (%v)", err)
		}
	})
	t.Run("provisions", func(t *testing.T) {
		s := newStore(t, Config{Limits: consentstore.Limits{MaxProvisions: 3}, Now: now})
		three, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"three","status":"active","patient":{"reference":"Patient/1"},"provision":{"type":"permit","provision":[{"type":"deny"},{"type":"deny"}]}}`))
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, three)
		four, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"four","status":"active","patient":{"reference":"Patient/1"},"provision":{"type":"permit","provision":[{"type":"deny"},{"type":"deny","provision":[{"type":"permit"}]}]}}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, four); !errors.Is(err, consentstore.ErrLimit) {
			t.Errorf("put of 4 provisions with a limit of 3: %v, want ErrLimit", err)
		}
	})
	t.Run("per patient", func(t *testing.T) {
		s := newStore(t, Config{Limits: consentstore.Limits{MaxPerPatient: 2}, Now: now})
		put(t, s, consent(t, "a", "Patient/1"))
		put(t, s, consent(t, "b", "Patient/1"))
		if _, err := s.Put(ctx, consent(t, "c", "Patient/1")); !errors.Is(err, consentstore.ErrLimit) {
			t.Errorf("third consent with a limit of 2: %v, want ErrLimit", err)
		}
		put(t, s, consent(t, "a", "Patient/1")) // a replacement adds nothing
		put(t, s, consent(t, "c", "Patient/2")) // another patient
		if _, err := s.Revoke(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, consent(t, "d", "Patient/1")); !errors.Is(err, consentstore.ErrLimit) {
			t.Errorf("a revoked record still counts: %v, want ErrLimit", err)
		}
		if recs, _, err := s.List(ctx, "Patient/1"); err != nil || len(recs) != 2 {
			t.Errorf("patient 1 has %d records (%v)", len(recs), err)
		}
	})
	t.Run("off", func(t *testing.T) {
		s := newStore(t, Config{Limits: consentstore.Limits{MaxBytes: -1, MaxProvisions: -1, MaxPerPatient: -1, MaxClockSkew: -1}, Now: now})
		c, err := fhirconsent.Parse([]byte(r4Dated("future", "2099-01-01")))
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, c)
	})
}

func testNotFound(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, consentstore.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if _, err := s.Revoke(ctx, "nope"); !errors.Is(err, consentstore.ErrNotFound) {
		t.Errorf("revoke: %v", err)
	}
	recs, v, err := s.List(ctx, "Patient/none")
	if err != nil || len(recs) != 0 || v == "" {
		t.Errorf("list of unknown patient: %v %q %v", recs, v, err)
	}
	set, err := s.ForPatient(ctx, "Patient/none")
	if err != nil || len(set.Consents) != 0 || set.Version == "" {
		t.Errorf("for unknown patient: %+v %v", set, err)
	}
}

func testList(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	put(t, s, consent(t, "b", "Patient/1"))
	put(t, s, consent(t, "a", "Patient/1"))
	put(t, s, consent(t, "c", "Patient/2"))
	if _, err := s.Revoke(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	recs, v, err := s.List(ctx, "Patient/1")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Consent.ID != "a" || recs[1].Consent.ID != "b" || !recs[1].Revoked || recs[0].Revoked {
		t.Errorf("list %+v", recs)
	}
	set, _ := s.ForPatient(ctx, "Patient/1")
	if v != set.Version {
		t.Errorf("list version %q, for-patient version %q", v, set.Version)
	}
}

func testRevoke(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	a := put(t, s, consent(t, "c1", "Patient/1"))
	before, _ := s.ForPatient(ctx, "Patient/1")
	rec, err := s.Revoke(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Revoked || rec.Version == a.Version {
		t.Errorf("revoke record %+v", rec)
	}
	got, err := s.Get(ctx, "c1")
	if err != nil || !got.Revoked {
		t.Errorf("revoked consent not readable as revoked: %+v %v", got, err)
	}
	after, _ := s.ForPatient(ctx, "Patient/1")
	if len(after.Consents) != 0 || after.Version == before.Version {
		t.Errorf("for patient after revoke: %+v (before %+v)", after, before)
	}
	if _, err := s.Revoke(ctx, "c1"); err != nil {
		t.Errorf("revoke twice: %v", err)
	}
}

func testPutAfterRevoke(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	put(t, s, consent(t, "c1", "Patient/1"))
	if _, err := s.Revoke(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	rec := put(t, s, consent(t, "c1", "Patient/1"))
	if rec.Revoked {
		t.Error("a new record is revoked")
	}
	set, _ := s.ForPatient(ctx, "Patient/1")
	if len(set.Consents) != 1 {
		t.Errorf("for patient: %d consents", len(set.Consents))
	}
}

func testForPatient(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	put(t, s, consent(t, "a", "Patient/1"))
	put(t, s, consent(t, "b", "Patient/1"))
	put(t, s, consent(t, "c", "Patient/2"))
	set, err := s.ForPatient(ctx, "Patient/1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range set.Consents {
		ids = append(ids, c.ID)
		if c.Version == "" {
			t.Errorf("consent %s has no version", c.ID)
		}
	}
	if strings.Join(ids, ",") != "a,b" {
		t.Errorf("ids %v", ids)
	}
}

func testVersions(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	seen := map[string]bool{}
	check := func(step string) {
		set, err := s.ForPatient(ctx, "Patient/1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[set.Version] {
			t.Errorf("%s: version %q seen before", step, set.Version)
		}
		seen[set.Version] = true
	}
	check("empty")
	put(t, s, consent(t, "a", "Patient/1"))
	check("put")
	put(t, s, consent(t, "a", "Patient/1"))
	check("replace")
	before, _ := s.ForPatient(ctx, "Patient/1")
	put(t, s, consent(t, "z", "Patient/2"))
	after, _ := s.ForPatient(ctx, "Patient/1")
	if before.Version != after.Version {
		t.Errorf("another patient's write changed the version")
	}
	if _, err := s.Revoke(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	check("revoke")
}

func testConcurrent(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("w%d-%d", w, i%5)
				if _, err := s.Put(ctx, consent(t, id, "Patient/1")); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.ForPatient(ctx, "Patient/1"); err != nil {
					t.Error(err)
				}
				if i%7 == 0 {
					if _, err := s.Revoke(ctx, id); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	recs, _, err := s.List(ctx, "Patient/1")
	if err != nil || len(recs) != 20 {
		t.Errorf("list: %d records, %v", len(recs), err)
	}
}

func testCanceled(t *testing.T, s consentstore.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, consent(t, "c", "Patient/1")); !errors.Is(err, context.Canceled) {
		t.Errorf("put: %v", err)
	}
	if _, err := s.ForPatient(ctx, "Patient/1"); !errors.Is(err, context.Canceled) {
		t.Errorf("for patient: %v", err)
	}
}

// testModel runs generated sequences of puts (with and without ifVersion,
// for the patient that holds an id and for another) and revocations
// against a store and a model of the rules, and compares every answer and
// every patient's records after each step: a refused write changes
// nothing, an accepted one exactly what it says.
func testModel(t *testing.T, newStore func(t *testing.T, cfg Config) consentstore.Store) {
	ctx := context.Background()
	type entry struct {
		patient, version string
		revoked          bool
	}
	ids := []string{"a", "b", "c", "d"}
	patients := []string{"Patient/1", "Patient/2"}
	const perPatient = 3
	rapid.Check(t, func(rt *rapid.T) {
		s := newStore(t, Config{Limits: consentstore.Limits{MaxPerPatient: perPatient}, Now: func() time.Time { return Clock }})
		model := map[string]entry{}
		seen := map[string][]string{} // versions each id had
		count := func(patient string) int {
			n := 0
			for _, r := range model {
				if r.patient == patient {
					n++
				}
			}
			return n
		}
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for i := range steps {
			id := rapid.SampledFrom(ids).Draw(rt, fmt.Sprint(i, ".id"))
			old, had := model[id]
			if rapid.IntRange(0, 3).Draw(rt, fmt.Sprint(i, ".op")) == 0 {
				rec, err := s.Revoke(ctx, id)
				switch {
				case !had:
					if !errors.Is(err, consentstore.ErrNotFound) {
						rt.Fatalf("step %d: revoke of absent %s: %v, want ErrNotFound", i, id, err)
					}
				case err != nil:
					rt.Fatalf("step %d: revoke %s: %v", i, id, err)
				default:
					if rec.Version == old.version || !rec.Revoked {
						rt.Fatalf("step %d: revoke %s: %+v after version %s", i, id, rec, old.version)
					}
					model[id] = entry{old.patient, rec.Version, true}
					seen[id] = append(seen[id], rec.Version)
				}
			} else {
				patient := rapid.SampledFrom(patients).Draw(rt, fmt.Sprint(i, ".patient"))
				var ifVersion string
				switch rapid.IntRange(0, 3).Draw(rt, fmt.Sprint(i, ".if")) {
				case 1:
					ifVersion = old.version // "" when absent: no condition
				case 2:
					if len(seen[id]) > 0 {
						ifVersion = rapid.SampledFrom(seen[id]).Draw(rt, fmt.Sprint(i, ".stale"))
					}
				case 3:
					ifVersion = "999999"
				}
				rec, err := s.Put(ctx, consent(t, id, patient), consentstore.IfVersion(ifVersion))
				var want error
				switch {
				case had && old.patient != patient:
					want = consentstore.ErrOtherPatient
				case ifVersion != "" && (!had || old.version != ifVersion):
					want = consentstore.ErrVersionMismatch
				case !had && count(patient) >= perPatient:
					want = consentstore.ErrLimit
				}
				switch {
				case want != nil:
					if !errors.Is(err, want) {
						rt.Fatalf("step %d: put %s for %s if %q: %v, want %v", i, id, patient, ifVersion, err, want)
					}
				case err != nil:
					rt.Fatalf("step %d: put %s for %s if %q: %v", i, id, patient, ifVersion, err)
				default:
					if rec.Version == "" || rec.Version == old.version || rec.Revoked {
						rt.Fatalf("step %d: put %s: %+v after version %s", i, id, rec, old.version)
					}
					model[id] = entry{patient, rec.Version, false}
					seen[id] = append(seen[id], rec.Version)
				}
			}
			for _, p := range patients {
				recs, _, err := s.List(ctx, p)
				if err != nil {
					rt.Fatal(err)
				}
				var got, want []string
				for _, r := range recs {
					got = append(got, fmt.Sprintf("%s@%s/%t", r.Consent.ID, r.Version, r.Revoked))
				}
				var live []string
				for _, id := range ids {
					if r, ok := model[id]; ok && r.patient == p {
						want = append(want, fmt.Sprintf("%s@%s/%t", id, r.version, r.revoked))
						if !r.revoked {
							live = append(live, id)
						}
					}
				}
				if strings.Join(got, " ") != strings.Join(want, " ") {
					rt.Fatalf("step %d: %s has %v, want %v", i, p, got, want)
				}
				set, err := s.ForPatient(ctx, p)
				if err != nil {
					rt.Fatal(err)
				}
				var forPatient []string
				for _, c := range set.Consents {
					forPatient = append(forPatient, c.ID)
				}
				if strings.Join(forPatient, " ") != strings.Join(live, " ") {
					rt.Fatalf("step %d: %s decides with %v, want %v", i, p, forPatient, live)
				}
			}
		}
	})
}
