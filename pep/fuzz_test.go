package pep_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/chaperone-pdp/chaperone/pep"
)

func addSeeds(f *testing.F, add func([]byte)) {
	add([]byte(patientJSON))
	add([]byte(observationJSON))
	files, _ := filepath.Glob(filepath.Join("testdata", "hl7", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

// FuzzApply: Apply never panics, never releases on an error, and what it
// releases is JSON in which the masked element cannot be reached.
func FuzzApply(f *testing.F) {
	addSeeds(f, func(b []byte) {
		for i := range 4 {
			f.Add(b, uint8(i))
		}
	})
	f.Fuzz(func(t *testing.T, in []byte, pick uint8) {
		c := maskCases[int(pick)%len(maskCases)]
		ob := masks(c.mask)
		ob.RedactLabels = labels("|R").RedactLabels
		out, withheld, err := pep.Apply(ob, in)
		// Without obligations the input is checked as thoroughly, and
		// released as it is.
		plain, pw, perr := pep.Apply(nil, in)
		if (perr == nil) != (err == nil) || (perr == nil && (pw || !bytes.Equal(plain, in))) {
			t.Fatalf("without obligations: err %v withheld %v, with: err %v", perr, pw, err)
		}
		if err != nil || withheld {
			if out != nil || !withheld {
				t.Fatalf("err %v withheld %v with output %q", err, withheld, out)
			}
			return
		}
		var doc any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("released invalid JSON: %v", err)
		}
		if reaches(doc, c.gone) {
			t.Fatalf("%s released:\nin  %s\nout %s", c.gone, in, out)
		}
	})
}

// FuzzApplyBundle: the Bundle filter never panics and never releases
// output on an error, nor a denied entry.
func FuzzApplyBundle(f *testing.F) {
	f.Add([]byte(searchset(entry("Patient", "a", ""), entry("Patient", "deny-1", ""))))
	addSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, in []byte) {
		d := &byID{}
		out, _, err := pep.ApplyBundle(in, d.decide, pep.WithBatchSize(2))
		if err != nil {
			if out != nil {
				t.Fatalf("output on error: %q", out)
			}
			return
		}
		var doc any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("released invalid JSON: %v\n%s", err, out)
		}
	})
}
