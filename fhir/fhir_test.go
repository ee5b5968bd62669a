package fhir_test

import (
	"slices"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir"
)

func TestPurposeWithin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		purpose, want string
		within        bool
	}{
		{"HPAYMT", "HPAYMT", true},
		{"CLMATTCH", "HPAYMT", true},
		{"ELIGVER", "HPAYMT", true}, // ELIGVER → COVERAGE → HPAYMT
		{"HPAYMT", "CLMATTCH", false},
		{"ETREAT", "TREAT", true},
		{"TREAT", "ETREAT", false},
		{"CLINTRCHPC", "HRESCH", true},
		{"hpaymt", "HPAYMT", false},
		{"", "HPAYMT", false},
		{"HPAYMT", "", false},
	} {
		if got := fhir.PurposeWithin(tc.purpose, tc.want); got != tc.within {
			t.Errorf("PurposeWithin(%q, %q) = %v, want %v", tc.purpose, tc.want, got, tc.within)
		}
	}
	if got := fhir.PurposeChain("ELIGVER"); !slices.Equal(got, []string{"ELIGVER", "COVERAGE", "HPAYMT"}) {
		t.Errorf("PurposeChain(ELIGVER) = %v", got)
	}
}

func TestInteractions(t *testing.T) {
	t.Parallel()
	for _, i := range fhir.Interactions {
		if !i.Valid() {
			t.Errorf("%s not valid", i)
		}
		if i.Reads() && i.Writes() {
			t.Errorf("%s both reads and writes", i)
		}
		if i.ListsResources() && !i.Reads() {
			t.Errorf("%s lists resources without reading", i)
		}
	}
	for _, s := range []string{"", "Read", "READ", "read ", "transaction"} {
		if fhir.Interaction(s).Valid() {
			t.Errorf("%q valid", s)
		}
	}
}

func TestInPatientCompartment(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{
		"Observation": true, "Patient": true, "Claim": true, "Encounter": true,
		"Organization": false, "Practitioner": false, "CapabilityStatement": false, "Medication": false,
		"observation": false, "": false,
	} {
		if got := fhir.InPatientCompartment(typ); got != want {
			t.Errorf("InPatientCompartment(%q) = %v, want %v", typ, got, want)
		}
	}
}
