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

func TestIsResourceType(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{
		"Observation": true, "Patient": true, "CapabilityStatement": true, "Bundle": true,
		"MedicinalProduct": true, "DeviceUsage": true, "Transport": true,
		"observation": false, "OBSERVATION": false, "Resource": false, "DomainResource": false,
		"": false, "Observation ": false, "Foo": false,
	} {
		if got := fhir.IsResourceType(typ); got != want {
			t.Errorf("IsResourceType(%q) = %v, want %v", typ, got, want)
		}
	}
}

// Every type of the patient compartment is a resource type: the two lists
// cannot drift apart.
func TestCompartmentTypesAreResourceTypes(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{
		"Account", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse", "AuditEvent",
		"Basic", "BodyStructure", "CarePlan", "CareTeam", "ChargeItem", "Claim", "ClaimResponse",
		"ClinicalImpression", "Communication", "CommunicationRequest", "Composition", "Condition", "Consent",
		"Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DetectedIssue", "DeviceRequest",
		"DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "Encounter",
		"EnrollmentRequest", "EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
		"Group", "ImagingStudy", "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation",
		"Invoice", "List", "MeasureReport", "Media", "MedicationAdministration", "MedicationDispense",
		"MedicationRequest", "MedicationStatement", "MolecularSequence", "NutritionOrder", "Observation",
		"Patient", "Person", "Procedure", "Provenance", "QuestionnaireResponse", "RelatedPerson", "RequestGroup",
		"ResearchSubject", "RiskAssessment", "Schedule", "ServiceRequest", "Specimen", "SupplyDelivery",
		"SupplyRequest", "VisionPrescription", "DeviceUsage", "GenomicStudy", "ImagingSelection",
		"InventoryItem", "NutritionIntake", "RequestOrchestration", "Transport",
	} {
		if !fhir.InPatientCompartment(typ) || !fhir.IsResourceType(typ) {
			t.Errorf("%s: in compartment %v, resource type %v", typ, fhir.InPatientCompartment(typ), fhir.IsResourceType(typ))
		}
	}
}

func TestResourceTypes(t *testing.T) {
	t.Parallel()
	all := fhir.ResourceTypes()
	if !slices.IsSorted(all) || len(all) < 140 {
		t.Fatalf("ResourceTypes: %d types, sorted %t", len(all), slices.IsSorted(all))
	}
	for _, rt := range all {
		if !fhir.IsResourceType(rt) {
			t.Errorf("%s is listed but not a resource type", rt)
		}
	}
	all[0] = "changed"
	if fhir.ResourceTypes()[0] == "changed" {
		t.Error("ResourceTypes shares its slice with callers")
	}
}
