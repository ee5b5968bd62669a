// Package access holds the two kinds of access facts that are not consents:
// break-glass grants (an emergency access to one patient's record by one
// subject, with a reason and an expiry) and vendor agreements (the business
// associate agreement under which a client application may receive PHI).
//
// It also holds the token revocation list ([Revocations]): bearer tokens
// refused before they expire, by jti or by the SHA-256 of the token
// ([NewRevocation] checks a request; entries expire on their own after
// their Until).
//
// [Memory] keeps them in memory for a single replica; the Redis store in
// consentstore shares them between replicas. The engine reads them through
// the small interfaces it declares (engine.GrantLookup,
// engine.AgreementLookup) and exposes them to policies as facts; the
// policies decide what a grant overrides and what an agreement allows.
package access
