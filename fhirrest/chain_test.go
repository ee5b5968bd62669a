package fhirrest_test

import (
	"errors"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhirrest"
)

// TestChains: a chained parameter is refused unless allow-listed for the
// searched type, and an allowed one binds no patient.
func TestChains(t *testing.T) {
	t.Parallel()
	m, err := fhirrest.New("/fhir", fhirrest.WithChains(map[string][]string{"Observation": {"subject:Patient.name"}}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, query string
		ok                  bool
		patient             string
	}{
		{"GET", "/fhir/Observation", "subject:Patient.name=Smith&code=x", true, ""},
		{"GET", "/fhir/Observation", "subject%3APatient.name=Smith&patient=Patient/p1", true, "Patient/p1"},
		{"GET", "/fhir/Patient/p1/Observation", "subject:Patient.name=Smith", true, "Patient/p1"},
		{"GET", "/fhir/Observation", "subject.name=Smith", false, ""},
		{"GET", "/fhir/Condition", "subject:Patient.name=Smith", false, ""},
		{"GET", "/fhir/Observation", "subject:Patient.name=Sm%2525ith", false, ""},
		{"POST", "/fhir/Observation/_search", "subject:Patient.name=Smith", false, ""},
		{"GET", "/fhir/Observation", "_has:Observation:subject:code=x", false, ""},
	}
	for _, tc := range tests {
		got, err := m.Map(tc.method, tc.path, tc.query, []byte("code=x"))
		if (err == nil) != tc.ok || err == nil && got.Patient != tc.patient {
			t.Errorf("%s %s?%s: %+v %v, want ok %v", tc.method, tc.path, tc.query, got, err, tc.ok)
		}
		if !tc.ok && !errors.Is(err, fhirrest.ErrReverseChain) {
			var r *fhirrest.RefusedError
			if !errors.As(err, &r) {
				t.Errorf("%s: %v is not a refusal", tc.query, err)
			}
		}
	}
	for _, bad := range []map[string][]string{{"Nope": {"a.b"}}, {"Observation": {"name"}}, {"Observation": {"_has.x"}}, {"Observation": {"subject:patient.name"}}} {
		if _, err := fhirrest.New("/fhir", fhirrest.WithChains(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := fhirrest.New("/fhir"); err != nil {
		t.Fatal(err)
	}
}
