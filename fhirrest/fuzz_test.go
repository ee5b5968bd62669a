package fhirrest_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/fhirrest"
)

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)
	patientPattern = regexp.MustCompile(`^Patient/[A-Za-z0-9\-\.]{1,64}$`)
)

// checkMapped asserts what holds of every successful mapping.
func checkMapped(t *testing.T, got fhirrest.Mapped) {
	t.Helper()
	if !got.Action.Valid() {
		t.Fatalf("invalid action in %+v", got)
	}
	if got.Type != "" && !fhir.IsResourceType(got.Type) {
		t.Fatalf("unknown type in %+v", got)
	}
	if got.Type == "" {
		// Only system-level search, history, export and operation, and the
		// search of a whole compartment, name no type.
		switch got.Action {
		case fhir.Search, fhir.History, fhir.Export, fhir.Operation:
		default:
			t.Fatalf("no type for %+v", got)
		}
		if got.ID != "" {
			t.Fatalf("an id without a type in %+v", got)
		}
	}
	if got.ID != "" && !idPattern.MatchString(got.ID) {
		t.Fatalf("bad id in %+v", got)
	}
	if got.VersionID != "" && (got.Action != fhir.Vread || !idPattern.MatchString(got.VersionID)) {
		t.Fatalf("bad version in %+v", got)
	}
	if got.Patient != "" && !patientPattern.MatchString(got.Patient) {
		t.Fatalf("bad patient in %+v", got)
	}
	if got.Action.ListsResources() && got.Patient == "" && !got.PerEntryCheck {
		t.Fatalf("an unbounded answer set without per-entry checks: %+v", got)
	}
	if (got.Action == fhir.Export || got.Action == fhir.Operation) && !got.PerEntryCheck {
		t.Fatalf("%s without per-entry checks: %+v", got.Action, got)
	}
	if (got.Action == fhir.Read || got.Action == fhir.Vread || got.Action.Writes()) && got.Type != "CapabilityStatement" && got.Action != fhir.Create && got.ID == "" {
		t.Fatalf("%s without an id: %+v", got.Action, got)
	}
}

// FuzzMap feeds arbitrary requests: the mapper never panics, refuses with
// a *RefusedError, never maps a path holding a percent-encoding or a dot
// segment, and every mapping it returns is well formed.
func FuzzMap(f *testing.F) {
	for _, tc := range append(append([]mapCase{}, interactionCases...), refusedCases...) {
		f.Add(tc.method, tc.path, tc.query, []byte(tc.body))
	}
	f.Add("POST", "/fhir", "", []byte(bundleOf("batch", entry("GET", "Patient/p1"), entry("PUT", "Observation/o1"))))
	f.Add("POST", "/fhir/", "", []byte(bundleOf("transaction", entry("GET", "Patient/p1/Observation?code=x"))))
	m := newMapper(f)
	f.Fuzz(func(t *testing.T, method, path, query string, body []byte) {
		got, err := m.Map(method, path, query, body)
		all, errAll := m.MapAll(method, path, query, body)
		for _, e := range []error{err, errAll} {
			var r *fhirrest.RefusedError
			if e != nil && !errors.As(e, &r) {
				t.Fatalf("error %v is not a *RefusedError", e)
			}
		}
		if err == nil {
			checkMapped(t, got)
			if strings.Contains(path, "%") {
				t.Fatalf("mapped a percent-encoded path %q: %+v", path, got)
			}
			for _, s := range strings.Split(path, "/") {
				if s == "." || s == ".." {
					t.Fatalf("mapped a dot segment in %q", path)
				}
			}
			if got.ID != "" && !strings.Contains(path, "/"+got.ID) {
				t.Fatalf("id %q not in the path %q", got.ID, path)
			}
			if errAll != nil || len(all) != 1 || all[0] != got {
				t.Fatalf("MapAll = %+v, %v; Map = %+v", all, errAll, got)
			}
		}
		if errAll == nil {
			if len(all) == 0 {
				t.Fatal("MapAll mapped nothing without an error")
			}
			for _, one := range all {
				checkMapped(t, one)
			}
		}
	})
}
