# The OPA side of bench/compare.sh: the RBAC + consent policy of
# bench/rbac/rbac.cedar in Rego, deny-overrides, with each patient's
# consent as data (data.consents, bench/opa/data.json) instead of FHIR
# Consent resources. Input is a CheckRequest in proto3 JSON (what
# `chaperone bench --target opa` posts as {"input": …}); the answer is
# data.chaperone.bench.decision = {"decision": "ALLOW"|"DENY", "reasons",
# "obligations"}. TestOPAEquivalence checks it decides the reference
# scenario as Chaperone does with bench/rbac.
package chaperone.bench

access_actions := {"read", "vread", "search", "history", "export"}

write_actions := {"create", "update", "patch", "delete"}

clinical_types := {
	"AllergyIntolerance", "CarePlan", "Condition", "DiagnosticReport",
	"Encounter", "Immunization", "MedicationRequest", "Observation",
	"Patient", "Procedure",
}

roles := {r | some r in input.subject.roles}

labels := {l.code | some l in input.resource.securityLabels}

permits contains {"id": "care-team-read", "overrides": false, "masks": [], "tags": []} if {
	{"clinician", "nurse"} & roles != set()
	input.action in access_actions
	input.purposeOfUse == "TREAT"
	input.subject.organization != ""
	input.resource.organization == input.subject.organization
	input.resource.type in clinical_types
}

permits contains {"id": "patient-own-compartment", "overrides": true, "masks": [], "tags": []} if {
	"patient" in roles
	input.action in access_actions
	input.resource.patient != ""
	input.resource.patient == input.subject.id
}

permits contains {
	"id": "support-patient-contact", "overrides": false,
	"masks": ["Patient.identifier", "Patient.birthDate"], "tags": ["SUPPORT_ACCESS"],
} if {
	"support" in roles
	input.action in {"read", "search"}
	input.resource.type == "Patient"
	input.purposeOfUse == "HOPERAT"
	input.subject.organization != ""
	input.resource.organization == input.subject.organization
}

permits contains {"id": "break-glass", "overrides": true, "masks": [], "tags": ["BREAK_GLASS", "CONSENT_OVERRIDE"]} if {
	"clinician" in roles
	input.action in access_actions
	input.purposeOfUse == "ETREAT"
	input.context.breakGlassReason != ""
	input.resource.patient != ""
}

denies contains {"id": "restricted-outside-treatment", "code": "SENSITIVE_PURPOSE"} if {
	{"R", "V"} & labels != set()
	not input.purposeOfUse in {"TREAT", "ETREAT"}
}

denies contains {"id": "tenant-isolation", "code": "TENANT_MISMATCH"} if {
	input.resource.organization != ""
	input.resource.organization != input.subject.organization
	input.resource.patient != input.subject.id
}

denies contains {"id": "unmanaged-device-write", "code": "DEVICE_UNTRUSTED"} if {
	input.action in write_actions
	input.context.deviceTrust == "unmanaged"
}

# The patient's consent: deny, permit, or permit except some labels.
consent_record := data.consents[input.resource.patient]

default consent := "NO_CONSENT"

consent := "DENY" if consent_record.decision == "deny"

consent := "DENY" if {
	consent_record.decision == "permit"
	some l in consent_record.denyLabels
	l in labels
}

consent := "PERMIT" if {
	consent_record.decision == "permit"
	not denied_label
}

denied_label if {
	some l in consent_record.denyLabels
	l in labels
}

overridden if {
	some p in permits
	p.overrides
}

decision := {"decision": "DENY", "reasons": denies} if {
	count(denies) > 0
} else := {"decision": "DENY", "reasons": [{"code": "CONSENT_DENY"}]} if {
	consent == "DENY"
	not overridden
} else := {"decision": "DENY", "reasons": [{"code": "NO_PERMIT"}]} if {
	count(permits) == 0
} else := {
	"decision": "ALLOW",
	"reasons": [{"code": "POLICY_PERMIT", "policyId": p.id} | some p in permits],
	"obligations": {
		"maskPaths": {m | some p in permits; some m in p.masks},
		"auditTags": {t | some p in permits; some t in p.tags},
	},
}
