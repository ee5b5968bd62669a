package pep_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/chaperone-pdp/chaperone/pep"
)

var scanSeeds = []string{
	`{}`, `[]`, `0`, `-0`, `-0.5e+10`, `1E-2`, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `tru`, `true`, `nul`, `null `, ` false`,
	`"a"`, `"\u00e9\n\t\"\\\/\b\f\r"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\x"`, `"\u12"`,
	"\"\x01\"", "\"\xff\"", "\"\xed\xa0\x80\"", "\"é😀\"", `{"a":1,"b":[1,2,{"c":null}]}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`,
	`{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{1:2}`, `{"a":1}}`, `[[[]]]`, `{"a":1} x`, "\t{ \"a\" : [ 1 , 2 ] }\r\n",
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k3":8}`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k18":8}`,
	``, ` `, `"`, `[`, `{"a":`,
}

// checkScan holds the scanner to jsontext: the same inputs accepted (up to
// the scanner's depth limit), the same value written back.
func checkScan(t *testing.T, in []byte) {
	got, err := pep.ParseCompact(in)
	want := jsontext.Value(bytes.Clone(in))
	valid := want.IsValid()
	if err != nil && !errors.Is(err, pep.ErrInvalidJSON) {
		t.Fatalf("%q: error %v is not ErrInvalidJSON", in, err)
	}
	if valid && err != nil && !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("%q: scanner refused valid JSON: %v", in, err)
	}
	if !valid && err == nil {
		t.Fatalf("%q: scanner accepted invalid JSON", in)
	}
	// A shallow tree checks the same: it accepts and refuses alike and
	// writes the same value back.
	for levels := range 3 {
		shallow, serr := pep.ParseLevelsCompact(in, levels)
		if (serr == nil) != (err == nil) {
			t.Fatalf("%q: levels %d: err %v, full parse err %v", in, levels, serr, err)
		}
		if serr == nil {
			a, b := jsontext.Value(shallow), jsontext.Value(bytes.Clone(got))
			if a.Compact() != nil || b.Compact() != nil || !bytes.Equal(a, b) {
				t.Fatalf("%q: levels %d wrote %q, full %q", in, levels, shallow, got)
			}
		}
	}
	if err == nil {
		if err := want.Compact(); err != nil {
			t.Fatal(err)
		}
		g := jsontext.Value(got)
		if err := g.Compact(); err != nil {
			t.Fatalf("%q: wrote invalid JSON %q: %v", in, got, err)
		}
		if !bytes.Equal(g, want) {
			t.Fatalf("%q: wrote %q, want %q", in, got, want)
		}
	}
}

func TestScanMatchesJSONText(t *testing.T) {
	t.Parallel()
	for _, s := range scanSeeds {
		checkScan(t, []byte(s))
	}
	deep := strings.Repeat("[", pep.MaxDepth+1) + strings.Repeat("]", pep.MaxDepth+1)
	if _, err := pep.ParseCompact([]byte(deep)); err == nil {
		t.Error("nesting over the limit accepted")
	}
	ok := strings.Repeat("[", pep.MaxDepth) + strings.Repeat("]", pep.MaxDepth)
	checkScan(t, []byte(ok))
}

// FuzzScan is the differential fuzz test of the scanner against jsontext.
func FuzzScan(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(patientJSON))
	f.Fuzz(checkScan)
}
