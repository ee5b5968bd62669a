// Package server exposes Chaperone over Connect, gRPC and gRPC-Web on one
// HTTP handler ([New]): the DecisionService (Check, BatchCheck), and, mounted
// with options, ConsentService, AccessService, AgreementService and
// BundleService; the standard gRPC health service, gRPC reflection and
// GET /healthz (liveness: 200 when a policy bundle is active, 503 otherwise) and
// GET /readyz (readiness: 503 naming what is down while the bundle or a
// [WithReadiness] dependency, such as the consent store or the audit sink, is
// not usable; the gRPC health service answers NOT_SERVING then).
//
// Every request message is checked against the protovalidate rules of the
// .proto files before a handler sees it; a message that breaks one is
// answered with Connect code invalid_argument naming the field. JSON is
// read strictly on every door (Connect JSON and GET, gRPC-JSON): a member
// the message does not have is invalid_argument naming its path
// ("resource.securityLabel: unknown field"), never dropped. Every
// decision goes through a [Recorder] (the audit trail) before it is
// returned, with the caller's name ([CallerName]); a decision that cannot
// be recorded becomes DENY AUDIT_UNAVAILABLE. Every change of consents,
// break-glass grants and vendor agreements is recorded through a
// [ChangeRecorder] before it is made, attributed to the authenticated
// caller; a change that cannot be recorded is refused with unavailable
// and not made.
//
// Who may call is the [Guard]'s job, an HTTP middleware in front of every
// service: callers identified by mutual TLS ([NewTLSConfig]) or bearer JWTs
// checked against a JWKS ([callers.NewJWTVerifier]), authorized per
// procedure ([callers.NewAuthorizer]), rate limited per caller
// ([callers.NewRateLimiter]), with a correlation id ([CorrelationID]) taken
// from X-Request-Id or traceparent and echoed back. [CallerFromContext]
// returns the authenticated caller of a request. A panic anywhere in the
// handler is answered with code internal, never a dropped connection. [Metrics] publishes Prometheus metrics and [Tracing]
// OpenTelemetry traces.
//
// Doors ([WithDoor]) are other protocols for the same decisions, such as
// the AuthZEN door of package authzen: plain HTTP routes, behind the same
// guard (authorized by a procedure name of their own, [Route]), that decide
// through [Server.Decide], the path Check takes (validation, clock,
// engine, audit record, log line), so the doors cannot drift apart. A door
// that is an RPC service of another protocol (Envoy's ext_authz, package
// extauthz) is mounted with [WithGRPCDoor] like a service: reflection,
// health and the guard's procedure names.
//
// Connect codes appear only in this package (and in package extauthz,
// whose gRPC status is part of Envoy's protocol): domain packages return plain
// errors and the handlers translate them here, logging the detail and giving
// callers a message without PHI or internals.
package server
