# Vendors and business associates (45 CFR 164.502(e)): a request made
# through a client application (subject.clientId) needs that client's
# agreement to be active (BAA signed, not revoked, not expired) and to cover
# the request's purpose and resource type. The platform's own first-party
# applications (data/first_party_clients.json) are operated by the covered
# entity and need no business associate agreement.
package chaperone.vendor

first_party if input.subject.clientId in data.first_party_clients.clients

third_party if {
	input.subject.clientId != ""
	not first_party
}

deny contains {
	"id": "vendor-agreement-required",
	"code": "VENDOR_NOT_AUTHORIZED",
	"message": "the client application has no active business associate agreement",
} if {
	third_party
	not input.facts.agreement.active
}

deny contains {
	"id": "vendor-agreement-scope",
	"code": "VENDOR_NOT_AUTHORIZED",
	"message": "the client's agreement does not cover this purpose or resource type",
} if {
	third_party
	input.facts.agreement.active
	not input.facts.agreement.covers
}
