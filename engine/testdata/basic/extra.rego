package chaperone.extra

permit contains "billing-claims" if {
	"billing" in input.subject.roles
	input.resource.type == "Claim"
	input.purposeOfUse == "HPAYMT"
}

obligations := {"maskPaths": ["Claim.diagnosis"], "auditTags": ["PAYMENT"], "redactLabels": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}

deny contains {"id": "no-night-billing", "code": "AFTER_HOURS", "message": "billing works office hours"} if {
	"billing" in input.subject.roles
	input.context.hour < 6
}

deny contains "consent-deny-billing" if {
	"billing" in input.subject.roles
	input.consent.decision == "DENY"
}
