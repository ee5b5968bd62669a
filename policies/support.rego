# Support staff read a patient's contact details only (name, telecom,
# address, to reach the patient about an account), with clinical and
# identifying fields masked, for operations purposes, in their own
# organization. Where and when they may work is in context.cedar.
package chaperone.support

operations_purposes := {"HOPERAT", "PATADMIN", "HSYSADMIN"}

# Operations inside the own organization need no consent (164.506): a
# general opt-out does not stop it, a restriction naming the subject or its
# organization does.
permit contains {"id": "support-read-patient-contact", "overridesConsent": true} if {
	"support" in input.subject.roles
	input.action in {"read", "search"}
	input.resource.type == "Patient"
	input.purposeOfUse in operations_purposes
	own_organization_or_request_phase
	not restricted
}

restricted if {
	# mutate: equivalent drop-expr — consentRestrictsRecipient is only set on a consent DENY
	input.consent.decision == "DENY"
	input.consent.restrictsRecipient
}

obligations := {
	"maskPaths": [
		"Patient.identifier",
		"Patient.birthDate",
		"Patient.gender",
		"Patient.extension",
		"Patient.generalPractitioner",
		"Patient.maritalStatus",
		"Patient.photo",
		"Patient.contact",
		"Patient.link",
		"Patient.text",
	],
	"auditTags": ["SUPPORT_ACCESS"],
}

# The own organization, or the request phase, where the resource's
# organization is not known yet and each returned resource is decided in
# the resource phase.
own_organization_or_request_phase if input.facts.sameOrganization

# (A request that names the resource's organization is held to it by
# tenant-isolation in either phase.)
own_organization_or_request_phase if input.context.phase == "request"
