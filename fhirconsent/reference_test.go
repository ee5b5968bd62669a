package fhirconsent_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// TestConsentReferencesInOneSpelling: a consent whose patient or actor
// reference no request could carry is refused, so an opt-out is never
// stored under a spelling the decision path cannot find.
func TestConsentReferencesInOneSpelling(t *testing.T) {
	t.Parallel()
	consent := func(patient, actor string) string {
		return `{"resourceType":"Consent","id":"c1","status":"active",
 "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
 "patient":{"reference":` + patient + `},"dateTime":"2024-01-01",
 "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}]},
 "provision":{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
  "reference":{"reference":` + actor + `}}]}}`
	}
	tests := []struct {
		name, patient, actor string
		wantPatient          string // "" when refused
		wantPath             string
	}{
		{"literal", `"Patient/53"`, `"Practitioner/p1"`, "Patient/53", ""},
		{"absolute and versioned", `"http://fhir.example/r4/Patient/53/_history/2"`, `"https://x.example/Organization/o2"`, "Patient/53", ""},
		{"patient lower-case type", `"patient/53"`, `"Practitioner/p1"`, "", "patient.reference"},
		{"patient trailing space", `"Patient/53 "`, `"Practitioner/p1"`, "", "patient.reference"},
		{"patient query", `"Patient/53?x=1"`, `"Practitioner/p1"`, "", "patient.reference"},
		{"patient NUL", `"Patient/53\u0000"`, `"Practitioner/p1"`, "", "patient.reference"},
		{"patient bare id", `"53"`, `"Practitioner/p1"`, "", "patient.reference"},
		{"patient another type", `"Practitioner/53"`, `"Practitioner/p1"`, "", "patient.reference"},
		{"actor upper case", `"Patient/53"`, `"PRACTITIONER/p1"`, "", "provision.actor[0].reference.reference"},
		{"actor urn", `"Patient/53"`, `"urn:uuid:0b4f2a3e-7c9d-4c8e-9b5a-1f2e3d4c5b6a"`, "", "provision.actor[0].reference.reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := fhirconsent.Parse([]byte(consent(tt.patient, tt.actor)))
			if tt.wantPatient != "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Patient != tt.wantPatient {
					t.Fatalf("patient %q, want %q", c.Patient, tt.wantPatient)
				}
				return
			}
			var perr *fhirconsent.ParseError
			if !errors.As(err, &perr) {
				t.Fatalf("Parse = %v, want a *ParseError", err)
			}
			if !strings.Contains(perr.Path, "reference") {
				t.Fatalf("error at %q (%v), want the reference (%s)", perr.Path, err, tt.wantPath)
			}
		})
	}
}

func TestLiteralReference(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]bool{
		"Patient/53": true, "RelatedPerson/rp-1.2": true, "PractitionerRole/x": true,
		"Patient/" + strings.Repeat("9", 64): true, "Patient/" + strings.Repeat("9", 65): false,
		"PATIENT/53": false, "patient/53": false, "PAtient/53": false, "P/53": false, "Pa/53": true,
		"Patient/": false, "/53": false, "53": false, "Patient/53/": false, "Patient//53": false,
		"Patient/5 3": false, "Patient/53\x00": false, "Patient/5_3": false, "Pаtient/53": false, "": false,
	} {
		if got := fhirconsent.LiteralReference(ref); got != want {
			t.Errorf("LiteralReference(%q) = %t, want %t", ref, got, want)
		}
	}
}
