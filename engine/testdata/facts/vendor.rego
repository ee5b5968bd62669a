package chaperone.vendor

deny contains {"id": "vendor-not-authorized", "code": "VENDOR_NOT_AUTHORIZED"} if {
	input.subject.clientId != ""
	not input.facts.agreement.covers
}
