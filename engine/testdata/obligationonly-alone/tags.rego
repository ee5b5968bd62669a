package tags

obligations_only := {"auditTags": ["REGO_SEEN"], "redactLabels": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]} if {
	input.resource.type == "Observation"
}
