# Analytics: the analyst role reads and exports research data of its own
# organization (tenant isolation holds for analysts too) for research
# purposes only de-identified. The masks depend on the resource type, so
# they are computed here rather than declared: identifying elements of the
# Patient (names, telecom, address, identifiers, photo, contacts, links,
# narrative) and, on clinical resources, the identifiers, the reference to
# the patient, the encounter and free text. birthDate is generalised to the
# year: its path is masked and the audit tag BIRTHDATE_TO_YEAR tells the
# enforcement point to keep the year (see README.md).
package chaperone.analytics

research_purposes := {
	"HRESCH", "BIORCH", "CLINTRCH", "CLINTRCHNPC", "CLINTRCHPC",
	"PRECLINTRCH", "DSRCH", "POARCH", "TRANSRCH",
}

# Research resource types, with the element that points at the patient.
patient_element := {
	"AllergyIntolerance": "patient",
	"Condition": "subject",
	"DiagnosticReport": "subject",
	"Encounter": "subject",
	"Immunization": "patient",
	"MedicationRequest": "subject",
	"MedicationStatement": "subject",
	"Observation": "subject",
	"Procedure": "subject",
}

research_type(t) if t == "Patient"

research_type(t) if patient_element[t]

permit contains "analytics-deidentified" if {
	# mutate: equivalent drop-expr — analytics-research-requires-analyst (analytics.cedar) forbids research purposes to every other role
	"analyst" in input.subject.roles
	own_organization_or_request_phase
	# mutate: equivalent drop-expr — analytics-analyst-research-only (analytics.cedar) forbids the analyst every other purpose
	input.purposeOfUse in research_purposes
	# mutate: equivalent drop-expr — analytics-read-only (analytics.cedar) forbids the analyst every other action
	input.action in {"read", "search", "export"}
	research_type(input.resource.type)
}

patient_masks := [
	"Patient.name",
	"Patient.telecom",
	"Patient.address",
	"Patient.identifier",
	"Patient.birthDate",
	"Patient.photo",
	"Patient.contact",
	"Patient.link",
	"Patient.text",
]

masks := patient_masks if {
	input.resource.type == "Patient"
} else := [sprintf("%s.%s", [t, e]) |
	t := input.resource.type
	some e in ["identifier", patient_element[t], "encounter", "note", "text"]
	not absent_element[t][e]
]

# The elements of that list a research type does not have in FHIR (an
# Encounter neither belongs to an encounter nor carries notes): a mask path
# must name an element, or the engine refuses the decision (POLICY_ERROR).
absent_element := {"Encounter": {"encounter", "note"}}

tags := ["DEIDENTIFIED", "BIRTHDATE_TO_YEAR"] if {
	input.resource.type == "Patient"
} else := ["DEIDENTIFIED"]

obligations := {"maskPaths": masks, "auditTags": tags}

# The own organization, or the request phase, where the resource's
# organization is not known yet and each returned resource is decided in
# the resource phase.
own_organization_or_request_phase if input.facts.sameOrganization

# (A request that names the resource's organization is held to it by
# tenant-isolation in either phase.)
own_organization_or_request_phase if input.context.phase == "request"
