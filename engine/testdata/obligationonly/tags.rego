package tags

permit contains "rego-doctor-searches" if {
	"doctor" in input.subject.roles
	input.action == "search"
}

obligations_only := {"auditTags": ["REGO_SEEN"], "redactLabels": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]} if {
	input.resource.type == "Observation"
}
