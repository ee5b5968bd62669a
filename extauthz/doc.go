// Package extauthz is Chaperone's Envoy external authorization door: it
// serves envoy.service.auth.v3.Authorization/Check (the ext_authz v3 gRPC
// service Envoy and Istio call) on the API port, maps the HTTP request
// Envoy is about to forward to a request-phase CheckRequest through a
// [Mapper], decides it through a [Decider] (the server's, so that the door
// validates, decides, audits and logs exactly as Check does) and answers in
// ext_authz terms.
//
// [New] returns a [Door]; [Door.Handler] is its gRPC handler (Connect,
// which speaks gRPC over h2c and TLS), mounted with the procedure name a
// callers file grants ([Service] or [CheckProcedure]).
//
// What the door reads from attributes.request.http: method, path (path
// and query as sent), headers (the headers map, or header_map when Envoy
// sends raw headers) with the end user's authorization and the purpose of
// use header, and the body when Envoy's with_request_body sends it
// (raw_body, else body). A body Envoy marks partial
// (x-envoy-auth-partial-body: true) is refused: a truncated Bundle cannot
// be mapped. attributes.source.principal, the workload calling through
// Envoy, is handed to the Mapper.
//
// A batch or transaction (a POST of a Bundle to the FHIR base) is decided
// entry by entry when Envoy sends its body ([FromGateway] maps it with
// gateway.Gateway.MapAll, itself fhirrest's MapAll): one decision and one
// audit record per entry, in order, until the first entry denied. It is
// allowed only when every entry is: x-chaperone-decision-id then lists the
// entries' decision ids, comma-separated, and x-chaperone-obligations
// holds the union of their obligations. The first entry denied denies it
// with that entry's reasons, each issue's expression Bundle.entry[i]; an
// entry that cannot be mapped (or whose target cannot be fetched) refuses
// it before any decision, named the same way (gateway.Refusal's
// Expression). Without its body it is refused BODY_REQUIRED.
//
// What it answers:
//
//   - ALLOW: status.code 0 (OK) and ok_response whose headers carry
//     x-chaperone-decision-id and x-chaperone-obligations (the answer's
//     Obligations as protobuf JSON, base64url without padding, for an
//     enforcement point behind the gateway), and whose headers_to_remove
//     lists both names, so a client cannot send its own.
//   - DENY: status.code 7 (PERMISSION_DENIED) and denied_response with HTTP
//     403, or 401 when the end user's token is missing or bad, and an
//     application/fhir+json OperationOutcome with one issue per reason
//     code (codes only: nothing of the request). A request the Mapper
//     refuses (a path fhirrest cannot map safely, for one) is a DENY, never
//     an ALLOW.
//   - Internal failure (the rules could not run, the Mapper failed other
//     than by refusing): the call fails with gRPC status 14 (UNAVAILABLE),
//     so Envoy's status_on_error applies (with failure_mode_allow false,
//     the request is refused).
package extauthz
