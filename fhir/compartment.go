package fhir

// patientCompartment holds the resource types that can be in a patient's
// compartment: those of the R4 CompartmentDefinition "patient" plus the
// types R5 added or renamed.
var patientCompartment = map[string]bool{
	"Account": true, "AdverseEvent": true, "AllergyIntolerance": true, "Appointment": true,
	"AppointmentResponse": true, "AuditEvent": true, "Basic": true, "BodyStructure": true,
	"CarePlan": true, "CareTeam": true, "ChargeItem": true, "Claim": true, "ClaimResponse": true,
	"ClinicalImpression": true, "Communication": true, "CommunicationRequest": true,
	"Composition": true, "Condition": true, "Consent": true, "Coverage": true,
	"CoverageEligibilityRequest": true, "CoverageEligibilityResponse": true, "DetectedIssue": true,
	"DeviceRequest": true, "DeviceUseStatement": true, "DiagnosticReport": true,
	"DocumentManifest": true, "DocumentReference": true, "Encounter": true,
	"EnrollmentRequest": true, "EpisodeOfCare": true, "ExplanationOfBenefit": true,
	"FamilyMemberHistory": true, "Flag": true, "Goal": true, "Group": true, "ImagingStudy": true,
	"Immunization": true, "ImmunizationEvaluation": true, "ImmunizationRecommendation": true,
	"Invoice": true, "List": true, "MeasureReport": true, "Media": true,
	"MedicationAdministration": true, "MedicationDispense": true, "MedicationRequest": true,
	"MedicationStatement": true, "MolecularSequence": true, "NutritionOrder": true,
	"Observation": true, "Patient": true, "Person": true, "Procedure": true, "Provenance": true,
	"QuestionnaireResponse": true, "RelatedPerson": true, "RequestGroup": true,
	"ResearchSubject": true, "RiskAssessment": true, "Schedule": true, "ServiceRequest": true,
	"Specimen": true, "SupplyDelivery": true, "SupplyRequest": true, "VisionPrescription": true,
	// R5
	"DeviceUsage": true, "GenomicStudy": true, "ImagingSelection": true, "InventoryItem": true,
	"NutritionIntake": true, "RequestOrchestration": true,
	"Transport": true,
}

// InPatientCompartment reports whether resources of resourceType can be in
// a patient's compartment, i.e. may hold a patient's data.
func InPatientCompartment(resourceType string) bool { return patientCompartment[resourceType] }
