# Support staff read a patient's contact details only, with clinical and
# identifying fields masked.
package chaperone.support

permit contains "support-read-patient-contact" if {
	"support" in input.subject.roles
	input.action in {"read", "search"}
	input.resource.type == "Patient"
	input.subject.organization != ""
	input.resource.organization == input.subject.organization
}

obligations := {
	"maskPaths": [
		"Patient.identifier",
		"Patient.birthDate",
		"Patient.extension",
		"Patient.generalPractitioner",
	],
	"auditTags": ["SUPPORT_ACCESS"],
}
