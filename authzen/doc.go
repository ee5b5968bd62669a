// Package authzen is Chaperone's OpenID AuthZEN Authorization API 1.0
// door: it maps an AuthZEN access evaluation to a CheckRequest, decides it
// through a [Decider] (the server's, so that the door decides, audits and
// logs exactly as Check does) and answers in AuthZEN's JSON, with
// Chaperone's obligations in the AuthZEN obligations profile.
//
// [New] returns a [Handler] serving
//
//	POST /access/v1/evaluation              one evaluation         ([Handler.ServeEvaluation])
//	POST /access/v1/evaluations             several evaluations    ([Handler.ServeEvaluations])
//	GET  /.well-known/authzen-configuration the PDP's metadata     ([Handler.ServeConfiguration])
//
// and [Handler.Routes] gives them with the procedure names a callers file
// grants ([Service], or one of [EvaluationProcedure],
// [EvaluationsProcedure], [ConfigurationProcedure]).
//
// Mapping (AuthZEN → CheckRequest): subject.type → subject.kind; subject.id
// → subject.id, a bare id getting the prefix of its type (practitioner →
// "Practitioner/", patient → "Patient/", related-person →
// "RelatedPerson/", device → "Device/"); subject.properties roles, scopes
// (arrays, or space-separated strings), organization, clientId,
// launchPatient, identifiers and organizationIdentifiers (arrays of
// {system, value}); action.name → action; resource.type and resource.id (an
// empty id asks about the type); resource.properties patient,
// organization, author, securityLabels, codes and categories (arrays of
// {system, code}), profiles, date (RFC 3339); context purposeOfUse,
// breakGlassReason, networkZone, deviceTrust, ip, correlationId, time
// (RFC 3339) and phase (default "resource": an AuthZEN caller usually knows
// the resource; "request" asks a request-phase decision), and
// supported_obligations.
//
// What the AuthZEN schema forbids is answered 400 with a plain message: bad
// JSON, a Content-Type other than application/json, a missing or mistyped
// subject, action or resource or one of their required members (subject
// type and id, action name, resource type and id), a properties or context
// that is not an object, an unknown options.evaluations_semantic. Members
// AuthZEN does not define are ignored at the top level and in the
// entities. Everything else is a decision, 200: a request that is valid
// AuthZEN but not what Chaperone needs is decision false with a reason and
// no decision id (it is not decided, so not audited, as Check answers such
// a request invalid_argument): UNKNOWN_PROPERTY for a key inside
// properties or context that Chaperone does not know (a misspelt
// attribute never loosens a decision), PURPOSE_REQUIRED without
// context.purposeOfUse, INVALID_REQUEST for a value of the wrong type or
// a CheckRequest breaking the API's rules (a context.time too far from the
// server's clock too), the field named in context.reason_admin.
//
// Requests of the plain shape (member names without escapes, strings of
// printable ASCII) are read, and answers written, by hand rather than
// by reflection; anything else takes the general json path, and the
// answer is the same either way (fast.go, held to json by differential
// tests and fuzz targets).
package authzen
