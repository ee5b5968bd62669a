// Package gateway is the forward-auth door of an HTTP gateway (nginx
// auth_request, Traefik ForwardAuth, Caddy forward_auth): it turns the
// request a gateway is about to forward, and the end user's bearer token
// (a SMART on FHIR access token), into a CheckRequest, decides it through
// the server and answers the gateway with a status it understands.
//
// # Configuration
//
// [Load] reads the gateway file of serve --gateway (YAML, unknown keys are
// an error naming them):
//
//	fhirBase: /fhir                 # path prefix of the FHIR API behind the gateway
//	tokens:
//	  jwks: keys.json               # file or https URL
//	  issuer: https://auth.example.org
//	  audience: https://fhir.example.org
//	  algorithms: [RS256, ES256, EdDSA]   # optional subset; the default
//	  maxLifetime: 24h              # optional; the default
//	  introspection:                # optional: RFC 7662, fail closed
//	    url: https://auth.example.org/introspect
//	    clientId: chaperone
//	    clientSecretFile: secret    # relative to the file; HTTP Basic
//	    cache: 30s                  # the default; never past the token's exp
//	claims:                         # claim name of each subject field
//	  id: fhirUser
//	  kind: kind
//	  roles: roles                  # array or space-separated string
//	  organization: org
//	  scopes: scope                 # space-separated string or array
//	  clientId: client_id
//	  launchPatient: patient
//	purposeOfUse:
//	  header: X-Purpose-Of-Use
//	  default: TREAT
//	resourcePhase: proxy            # proxy | application | none
//	tenantTagSystem: https://example.org/tenant  # optional: meta.tag system naming a resource's owning organization
//	attributes:                     # optional: fetch the target of a read or write by id
//	  fhirServer: http://fhir.internal:8080/fhir
//	  timeout: 2s                   # optional; the default
//	  maxBodyBytes: 1048576         # optional; the default
//	  cacheEntries: 10000           # optional; the default
//	chainedParameters:              # optional: chained search parameters allowed, per type (refused by default)
//	  Observation: [subject:Patient.name]
//
// # End-user tokens
//
// Tokens are verified by the JWKS machinery of package callers: RS256,
// ES256 and EdDSA only (never none or HS*), exp, nbf, iss, aud and a
// lifetime cap as for callers. No token or a bad one is 401.
//
// # Request phase
//
// A gateway knows the request, not the data, so its decisions are
// request-phase decisions: the resource's patient is known only from the
// URL (a compartment path or a patient= parameter), its organization and
// security labels not at all. An ALLOW therefore carries perEntryCheck
// whenever the mapper says the answer set is unknown, and also for reads
// and writes by id, whose target the door has not seen: the enforcement
// point behind the gateway (resourcePhase proxy or application) decides
// each returned resource in the resource phase. With resourcePhase none
// such an ALLOW is a DENY NO_RESOURCE_ENFORCEMENT. Only GET metadata could
// be decided fully at the door, and only when the engine does not flag it
// itself (the reference bundle flags every request-phase ALLOW).
//
// Decisions carry context.phase "request". The door reads no body: a POST
// _search, a batch or a transaction is refused BODY_REQUIRED. (The Envoy
// door, which may get the body, maps a batch or transaction entry by entry
// with [Gateway.MapAll].)
//
// # Attributes from the FHIR server
//
// With attributes.fhirServer, a read, vread, update, patch or delete by id
// is decided fully at the door, in the resource phase: [Gateway.Map]
// fetches the target (GET fhirServer/Type/id, or Type/id/_history/v for a
// vread, Accept application/fhir+json, no credentials, no redirects,
// bounded in time and size) and sets the CheckRequest's patient (a Patient
// is its own; else the patient or subject reference to a Patient),
// organization (the meta.tag of tenantTagSystem, else a Patient's
// managingOrganization), security labels (meta.security), categories and
// codes, with context.phase "resource" ([Request].Resolved). No
// perEntryCheck is added to such an ALLOW. Fetched attributes are cached
// for [Options].CacheTTL (the active bundle's cacheTtl), at most
// attributes.cacheEntries of them. Failing closed: no answer, a status
// other than 200, 404 and 410, or a body over the bound is a refusal
// TARGET_UNAVAILABLE; a body that is not the JSON of the resource asked
// for, or whose attributes cannot be read safely (two patients, two tenant
// tags, a patient or subject without a plain Patient/id reference), is
// TARGET_INVALID. A target the server does not have (404, 410) is decided
// as without attributes, in the request phase: the door is never looser
// with attributes than without, and an update may create the resource. An
// update or patch is decided on the stored target, not on the new content
// the door does not see.
//
// # The door
//
// [Door] answers any method on /authz/forward: the original request comes
// from X-Original-Method and X-Original-URI (nginx) or X-Forwarded-Method
// and X-Forwarded-Uri (Traefik, Caddy). 200 is an ALLOW with the headers
// x-chaperone-decision-id and x-chaperone-obligations (the obligations as
// unpadded base64url of their JSON); 401 is no or a bad end-user token; 403
// is a DENY or a request that cannot be mapped safely, with an
// application/fhir+json OperationOutcome naming the reason codes and
// nothing of the request.
package gateway
