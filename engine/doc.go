// Package engine is Chaperone's decision pipeline: it takes one
// [chaperonev1.CheckRequest], gathers the facts the request depends on (the
// patient's FHIR consents through a [ConsentSource]), evaluates the policy
// layers of the active [Bundle] (Cedar and Rego), combines their answers and
// returns a [chaperonev1.CheckResponse] with obligations and reasons.
//
// A [Bundle] is compiled once from a policy directory ([LoadBundle]): Cedar
// policy sets are parsed and indexed by resource type and action, Rego
// modules compiled into one prepared query. An [Engine] holds the active
// bundle behind an atomic pointer, so a new bundle is swapped in without
// stopping decisions ([Engine.Activate]).
//
// # Combining
//
// Each layer answers permit, deny or not-applicable. The bundle's combining
// rule is deny-overrides: the decision is ALLOW only if some layer permits
// and none denies; when nothing applies the answer is DENY NO_PERMIT. A
// consent DENY makes the decision DENY (CONSENT_DENY) unless a permitting
// policy is marked as overriding consent (break-glass rules). Any evaluation
// error, a consent store that cannot answer (consents or break-glass
// grants), an agreement store that cannot answer, or a missing bundle is a
// DENY with a reason code (POLICY_ERROR, CONSENT_UNAVAILABLE,
// AGREEMENT_UNAVAILABLE, NO_BUNDLE): the engine fails closed.
//
// # Memoisation
//
// Policy layers are pure functions of what they see, so the engine
// remembers their outcome per active bundle, keyed on every input a policy
// can read (the request without its correlation id, the decision time at
// the bundle's resolution, the consent decision). The consent layer is
// evaluated on every request, so a consent write is seen by the next
// decision. Swapping the bundle starts an empty memo; failed evaluations are
// never remembered; [Engine.Explain] always evaluates.
//
// That memo misses whenever any field differs, e.g. every read of another
// resource. The Rego layer therefore keeps a memo of its own, keyed on the
// input paths its modules read: when the bundle is compiled, every
// reference to input is collected (input.subject.roles,
// input.resource.type, …); if each starts with constant keys, and no module
// reads input as a whole, by a computed key, through an import or a with,
// the layer's result follows from the values at those paths and the
// bundle's data, and is remembered by them. A module calling a
// nondeterministic builtin (time.now_ns, http.send, …) turns both memos
// off for its bundle. [WithMemo] sizes both (0 turns them off).
//
// # What policies see
//
// Cedar: principal is Subject::"<subject.id>" with parents Role::"<role>"
// and attributes kind, roles, organization, clientId, scopes, identifiers;
// action is Action::"<interaction>" (read, vread, search, history and export
// are also in Action::"access"; create, update, patch and delete in
// Action::"correct"); resource is <resource.type>::"<resource.id>" with
// attributes type, id, patient, organization, author, labels (security label
// codes), securityLabels, codes and categories ("system|code"), and date when
// known; context has purposeOfUse, time, hour, localTime {weekday, hour,
// minute} (the decision time in the tenant's zone: the manifest's
// tenantTimezones entry for subject.organization, else its timezone),
// breakGlassReason, ip (when
// given), networkZone, deviceTrust and consent ("PERMIT", "DENY" or
// "NO_CONSENT"), consentNamesSubject (a permitting consent names the subject
// itself, by reference or own identifier, as a recipient actor: a
// delegation to this person, not to anyone), consentNamesRecipient (the
// permitting consent names the subject or its organization, by reference or
// by identifier with the same system: what may open another tenant),
// consentRestrictsRecipient (the denying consent names them: a restriction,
// not a general opt-out), decidingConsent {id, provision, scope,
// categories, purposes} (the consent that decided a PERMIT or DENY, the most
// recent of those that stand: its id, the path of its deciding provision,
// its scope and category codings, and the purpose codes of the deciding
// provision and its ancestors; empty for NO_CONSENT), sameOrganization (subject and resource name the
// same organization; never true when either is missing), population (a
// search, history or export of a patient-compartment type naming no
// patient), breakGlassGrant (an active grant of the subject for the
// patient), treatingRelationship (the subject, a practitioner, has a
// treating relationship with the patient at the decision time:
// [WithRelationships]), scopes {present, allows, levels} (the subject's SMART scopes,
// parsed in Go: present when any resource scope was given, allows when they
// grant the interaction on the resource type) and agreement {exists,
// active, covers, vendor, tier, purposes, resourceTypes} (the client app's
// vendor agreement: active when signed, not revoked and not expired; covers
// when also its purposes and resource types include the request's). The
// correlation id is for the audit trail, not for
// policies. Before any fact is gathered the engine refuses, whatever the
// policies say: a role held by the wrong subject kind (ROLE_KIND_MISMATCH),
// a role or security label the manifest does not list (UNKNOWN_ROLE,
// UNKNOWN_SECURITY_LABEL), a workforce subject without an organization
// (ORGANIZATION_REQUIRED). On an ALLOW it adds the audit tag DISCLOSURE when
// the subject acts outside its organization (but for a patient's own record)
// and perEntryCheck on a population request and on every request-phase
// ALLOW. context.phase is "request" when a gateway decides from the URL and
// the token alone (CheckRequest.context.phase), "resource" otherwise. Decisions are made at the
// engine's clock; context.time counts only with [WithRequestTime]. The decision time policies see is truncated to the manifest's
// timeResolution (default 1s). Annotations carry ids and obligations:
// @id("policy-id"), @mask("Patient.telecom,Patient.address"),
// @audit_tag("BREAK_GLASS"), @redact_label("system|code"),
// @reason("CODE") on a forbid, @overrides_consent("true") on a permit,
// @obligation_only("true") on a permit with obligations: an obligation-only
// policy permits nothing; when it matches and the combined decision is
// ALLOW (other policies permit), its obligations join the response (it is
// not among the reasons; --explain lists it). It must be a permit, carry
// @mask, @audit_tag or @redact_label, and not override consent.
// Mask paths, in @mask and in Rego obligations, are checked against the
// FHIR element index of package fhir/elements when the bundle compiles and,
// for paths Rego computes, on every decision (see maskpaths.go for the
// rules).
//
// Rego: input is the request in its proto3 JSON shape (every field present)
// plus input.consent ({"decision", "namesSubject", "namesRecipient",
// "restrictsRecipient", "deciding"}, deciding as decidingConsent in Cedar) and input.facts ({"breakGlassGrant", "treatingRelationship",
// "sameOrganization", "population", "scopes", "agreement"}, as in Cedar). Every package of the bundle that defines one of the
// rules permit (a set of policy ids, or of objects {"id", "overridesConsent"}),
// deny (a set of ids or of objects {"id", "code", "message"}) and
// obligations (an object {"maskPaths", "redactLabels", "auditTags"}, applied
// when the package permits) and obligations_only (an object of the same
// shape, the Rego form of an obligation-only policy: whenever it is
// defined and the combined decision is ALLOW, its obligations join the
// response; it permits nothing, and a deny of its package drops it) takes part in the decision.
//
// # Static checks
//
// [NewPolicyModel] describes all of the above as data: the principal,
// resource and action entities with their attributes, the Cedar context and
// the Rego input document. [PolicyModel.CedarSchema] and
// [PolicyModel.InputSchema] are generated from it, and the engine's tests
// hold what it builds for requests to it. [LoadBundle] checks every policy
// before the bundle compiles: Cedar policies are validated against the
// Cedar schema (cedar-go's strict validator), Rego modules type-checked
// against the input schema (OPA's schema-aware type checker); reason codes
// must be upper snake case, policy ids unique across layers, Cedar
// annotations among those above, and a role a policy names (Role::"name",
// principal.roles.contains("name"), "name" in input.subject.roles) among
// the manifest's roles when it lists them. Problems are returned together as a
// [*StaticCheckError], each a [Problem] with its file, line and column.
// The checks are compile-time only: nothing is added to the decision path.
package engine
