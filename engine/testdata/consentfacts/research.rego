package consentfacts

permit contains "rego-research-provision" if {
	input.purposeOfUse == "CLINTRCH"
	"HRESCH" in input.consent.deciding.purposes
	input.consent.deciding.provision == "provision.provision[0]"
	input.consent.deciding.id == "research-52"
}
