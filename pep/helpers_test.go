package pep_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// fixture reads a file of testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode parses JSON generically, numbers as json.Number.
func decode(t interface {
	Helper()
	Fatalf(string, ...any)
}, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b)
	}
	return v
}

// reaches reports whether the element of path ("Patient.name.given",
// "Observation.component.value[x]") is present anywhere in doc: in every
// resource of the path's type at any depth, through arrays, under any
// choice variant and as a "_" primitive sibling. It knows nothing of FHIR
// definitions: a choice segment matches every member name that continues
// its base with an upper-case letter.
func reaches(doc any, path string) bool {
	segs := strings.Split(path, ".")
	found := false
	var resources func(v any)
	resources = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["resourceType"] == segs[0] && follow(v, segs[1:]) {
				found = true
			}
			for _, c := range v {
				resources(c)
			}
		case []any:
			for _, c := range v {
				resources(c)
			}
		}
	}
	resources(doc)
	return found
}

func follow(v any, segs []string) bool {
	if len(segs) == 0 {
		return v != nil
	}
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if follow(e, segs) {
				return true
			}
		}
	case map[string]any:
		for name, c := range v {
			if matchSeg(strings.TrimPrefix(name, "_"), segs[0]) && follow(c, segs[1:]) {
				return true
			}
		}
	}
	return false
}

func matchSeg(name, seg string) bool {
	if base, ok := strings.CutSuffix(seg, "[x]"); ok {
		rest, ok := strings.CutPrefix(name, base)
		return ok && rest != "" && unicode.IsUpper(rune(rest[0]))
	}
	return name == seg
}

// hasRedacted reports whether a resource object carries the REDACTED label.
func hasRedacted(res map[string]any) int {
	meta, _ := res["meta"].(map[string]any)
	sec, _ := meta["security"].([]any)
	n := 0
	for _, c := range sec {
		c, _ := c.(map[string]any)
		if c["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" && c["code"] == "REDACTED" {
			n++
		}
	}
	return n
}

func masks(paths ...string) *chaperonev1.Obligations {
	return &chaperonev1.Obligations{MaskPaths: paths}
}

func labels(sc ...string) *chaperonev1.Obligations {
	ob := &chaperonev1.Obligations{}
	for _, s := range sc {
		system, code, _ := strings.Cut(s, "|")
		ob.RedactLabels = append(ob.RedactLabels, &chaperonev1.Coding{System: system, Code: code})
	}
	return ob
}
