// Package storetest is the behaviour every [consentstore.Store] must have,
// as one test suite: an implementation's test calls [Run] with a function
// that returns a new, empty store.
//
//	func TestMemory(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) consentstore.Store { return consentstore.NewMemory() })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// Run runs the store suite; newStore returns an empty store for each test.
func Run(t *testing.T, newStore func(t *testing.T) consentstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s consentstore.Store)
	}{
		{"put and get", testPutGet},
		{"generated id", testGeneratedID},
		{"replace", testReplace},
		{"replace moves patient", testReplaceMovesPatient},
		{"not found", testNotFound},
		{"list", testList},
		{"revoke", testRevoke},
		{"put after revoke", testPutAfterRevoke},
		{"for patient", testForPatient},
		{"versions change", testVersions},
		{"concurrent", testConcurrent},
		{"canceled context", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
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

func testReplaceMovesPatient(t *testing.T, s consentstore.Store) {
	ctx := context.Background()
	put(t, s, consent(t, "c1", "Patient/1"))
	put(t, s, consent(t, "c1", "Patient/2"))
	one, err := s.ForPatient(ctx, "Patient/1")
	if err != nil || len(one.Consents) != 0 {
		t.Errorf("patient 1 still has %d consents (%v)", len(one.Consents), err)
	}
	two, err := s.ForPatient(ctx, "Patient/2")
	if err != nil || len(two.Consents) != 1 {
		t.Errorf("patient 2 has %d consents (%v)", len(two.Consents), err)
	}
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
