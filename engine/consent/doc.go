// Package consent evaluates a request against a patient's FHIR consents:
// the FHIR R4/R5 Consent semantics in Go.
//
// A [Query] holds what matching needs from one
// [chaperonev1.CheckRequest], normalised once ([NewQuery]); [Evaluate]
// runs it against compiled [fhirconsent.Consent] values and returns a
// [Result]: PERMIT, DENY or NO_CONSENT, the consents and provisions that
// decided, and the security labels to redact.
//
// # Which consents apply
//
// A consent applies to a request when its status is active, its patient
// (R4 patient, R5 subject) is the request's resource.patient, the request
// time (context.time, else now) is within its validity (R4 root
// provision.period, R5 period), the root provision's own criteria match
// (R4), and its scope governs the request: privacy consents always;
// research consents only when purposeOfUse is HRESCH or one of its
// specialisations; treatment and advance-directive consents never (they are
// not about data access). A consent with no scope or category code that
// says what it is for is treated as a privacy consent: a patient's consent
// given to a decision point is about access, and ignoring a restriction
// would fail open.
//
// # The decision of one consent
//
// A consent PERMIT comes only from a provision of type permit that
// applies. The root's type is the R4 root provision.type, else policyRule
// (OPTIN, OPTINR → permit; OPTOUT, OPTOUTE → deny); in R5 it is decision.
// With none of them (e.g. R4 policyRule "hipaa-self-pay" and an untyped
// root) the root has no type: it decides nothing itself, and the consent
// decides only through nested provisions with a type. A nested provision
// without a type of its own (every R5 provision) is an exception: the
// opposite of its parent, and without a type too when its parent has none.
// Among the nested provisions that match, the deepest match with a type
// decides; sibling provisions that match and disagree: deny wins.
//
// A provision matches when every criterion it has matches (within one
// criterion's list any entry may match):
//   - actor: a recipient role (IRCP, PRCP, ..., or none) is compared with
//     the subject: reference equal to subject.id or subject.organization,
//     identifier in subject.identifiers or subject.organizationIdentifiers
//     (same system and same value; a missing system matches only a
//     missing system),
//     or, for an actor given by role alone, a role of the subject; the
//     custodian role (CST) is compared with resource.organization, the
//     author role (AUT) with resource.author.
//   - action (consentaction): access covers read, vread, search, history
//     and export; correct covers create, update, patch and delete; collect
//     covers create; use and disclose cover every read, export and operation.
//   - purpose: purposeOfUse, or a specialisation of it in the v3
//     PurposeOfUse hierarchy (ETREAT is a TREAT).
//   - securityLabel: a label of the resource; v3-Confidentiality codes are
//     ordered U < L < M < N < R < V, so a deny on R also covers V and a
//     permit on R also covers N and below (the resource's highest
//     confidentiality label counts).
//   - class / resourceType: resource.type, or a profile URL in
//     resource.profiles; documentType and code: a code in resource.codes or
//     resource.categories.
//   - dataPeriod: resource.date within the period; period: the request time.
//   - data: the resource ("Type/id") for meanings instance, related and
//     dependents; resource.author for authoredby.
//   - an R5 expression is not evaluated: the provision matches only if it
//     denies (fail closed).
//
// # Several consents
//
// With [MostRecent] (the default) the most recent applicable consent
// (R4 dateTime, R5 date; deny wins a tie) decides; with [DenyOverrides] any
// applicable deny decides, else any permit. No applicable consent is
// [NoConsent].
//
// # Residual obligations
//
// A request that is not about one particular resource (no resource.id and
// no security labels, e.g. a search) cannot match a security label. A deny
// provision whose only unmatched criterion is its security labels then does
// not deny; its labels (with the higher confidentiality levels) become
// [Result.RedactLabels], which the caller must withhold from what it
// returns. Residual labels never make a PERMIT: under a permit that
// applies they are its obligations (PERMIT plus RedactLabels); when the
// consent has nothing else that applies (a consent that only denies
// labelled data), the answer is NO_CONSENT plus RedactLabels.
package consent
