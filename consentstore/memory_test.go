package consentstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/consentstore/storetest"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

const minimalR4 = `{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/52"}}`

func TestMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) consentstore.Store {
		return consentstore.NewMemory(consentstore.WithMemoryLimits(cfg.Limits), consentstore.WithMemoryClock(cfg.Now))
	})
}

func TestMemoryLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.json", minimalR4)
	write("b.json", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Consent","id":"b1","status":"active","patient":{"reference":"Patient/52"}}},{"resource":{"resourceType":"Consent","id":"b2","status":"active","subject":{"reference":"Patient/52"}}}]}`)
	write("c.ndjson", `{"resourceType":"Consent","id":"n1","status":"active","patient":{"reference":"Patient/52"}}`+"\n"+`{"resourceType":"Consent","id":"n2","status":"inactive","patient":{"reference":"Patient/53"}}`+"\n")
	write("notes.txt", "ignored")
	m := consentstore.NewMemory()
	n, err := m.Load(ctx, dir)
	if err != nil || n != 5 {
		t.Fatalf("load: %d, %v", n, err)
	}
	set, _ := m.ForPatient(ctx, "Patient/52")
	if len(set.Consents) != 4 {
		t.Errorf("patient 52: %d consents", len(set.Consents))
	}
	n, err = consentstore.NewMemory().Load(ctx, "../fhirconsent/testdata/hl7-r4")
	if err != nil || n != 15 {
		t.Errorf("load HL7 examples: %d, %v", n, err)
	}
	write("bad.json", `{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/1"},"provision":{"actor":[{"reference":1}]}}`)
	_, err = consentstore.NewMemory().Load(ctx, dir)
	var pe *fhirconsent.ParseError
	if !errors.As(err, &pe) || pe.Path != "provision.actor[0].reference" {
		t.Errorf("bad file: %v", err)
	}
	if _, err := consentstore.NewMemory().Load(ctx, filepath.Join(dir, "missing")); err == nil {
		t.Error("missing path loaded")
	}
}

func BenchmarkMemoryForPatient(b *testing.B) {
	ctx := context.Background()
	m := consentstore.NewMemory()
	if _, err := m.Load(ctx, "../fhirconsent/testdata/hl7-r4"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.ForPatient(ctx, "Patient/f001"); err != nil {
			b.Fatal(err)
		}
	}
}
