package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/keyset"
)

func fieldKeys(t *testing.T, ks *keyset.Set) *audit.FieldKeys {
	t.Helper()
	fk, err := audit.NewFieldKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	return fk
}

func readRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	recs, err := audit.Records(audit.ReadFiles(path))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestLogFieldKeys writes a signed log with field keys, rotating A → A+B
// (primary B) half way: the files name nobody (no patient, subject,
// resource id or IP in clear), verification needs no key, and the
// disclosures of Patient/52 are found through the blind index with A+B (and
// with B alone only once A's records are gone: they fail closed).
func TestLogFieldKeys(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	signer := newSigner(t)
	a, err := keyset.Generate("A")
	if err != nil {
		t.Fatal(err)
	}
	ab, err := a.Rotate("B")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ab.Drop("A")
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithFieldKeys(fieldKeys(t, a)))
	record(t, l, 0, 5)
	if err := l.Change(context.Background(), "admin", audit.Change{ID: "ch1", Action: audit.ChangeGrant, Patient: "Patient/52",
		Subject: "Practitioner/p9", Reason: "patient unconscious, records needed"}); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	l = audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithFieldKeys(fieldKeys(t, ab)))
	record(t, l, 5, 10)
	closeLog(t, l)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"Patient/52", "Practitioner/p1", "Practitioner/p9", "10.1.2.3", `"o3"`, "unconscious"} {
		if strings.Contains(string(raw), clear) {
			t.Errorf("the log holds %q in clear text", clear)
		}
	}
	if _, err := audit.Verify(audit.ReadFiles(path), signer.Public()); err != nil {
		t.Fatalf("verify without field keys: %v", err)
	}

	recs := readRecords(t, path)
	if err := audit.OpenRecords(recs, nil); !errors.Is(err, audit.ErrFieldKey) {
		t.Errorf("a report without the key: %v, want ErrFieldKey", err)
	}
	if err := audit.OpenRecords(readRecords(t, path), fieldKeys(t, b)); !errors.Is(err, keyset.ErrUnknownKey) {
		t.Errorf("records under A opened with B alone: %v", err)
	}
	fk := fieldKeys(t, ab)
	matched := fk.MatchPatient(recs, "Patient/52")
	if other := fk.MatchPatient(recs, "Patient/53"); len(other) >= len(matched) {
		t.Errorf("the blind index does not tell patients apart: %d records for 52, %d for 53", len(matched), len(other))
	}
	if err := audit.OpenRecords(matched, fk); err != nil {
		t.Fatal(err)
	}
	ds := audit.Disclosures(matched, "Patient/52", audit.Window{}, true)
	if len(ds) != 10 || ds[3].ResourceID != "o3" || ds[3].Recipient != "Practitioner/p1" {
		t.Fatalf("disclosures through the blind index: %d %+v", len(ds), ds)
	}
	if err := audit.OpenRecords(recs, fk); err != nil {
		t.Fatal(err)
	}
	cs := audit.Changes(recs, "Patient/52", audit.Window{})
	if len(cs) != 1 || cs[0].Subject != "Practitioner/p9" || cs[0].Reason != "patient unconscious, records needed" {
		t.Errorf("changes of the patient: %+v", cs)
	}
	if d, ok := audit.FindDecision(recs, "d-7"); !ok || d.Context.IP != "10.1.2.3" {
		t.Errorf("decision d-7 opened: %+v", d)
	}
}
