// Package console is Chaperone's web console: HTML pages served by
// chaperone serve --console at /console/ for the people who are not at a
// terminal.
//
//   - Playground: decide a CheckRequest (a form for the common fields,
//     proto JSON for the rest, examples to start from) against the active
//     bundle, or against a draft Cedar or Rego policy pasted in and compiled
//     in the server (never activated); see the decision, obligations,
//     reasons and the trace of every layer; run the bundle's test suites.
//   - Decisions: search the audit log by patient, subject, resource,
//     decision, reason and time; open a record; chain verification status
//     and the latest checkpoint.
//   - Break-glass: the emergency accesses nobody has reviewed yet, with
//     their reasons and grants; marking one reviewed writes a review record
//     on the chain as the signed-in caller.
//   - Patient: a patient's consents (active and revoked, their provisions
//     in plain words), break-glass grants, treating relationships, and
//     accounting of disclosures, exportable as CSV and printable.
//   - Bundle: active revision, digest, signers, last load error, and the
//     decision-impact diff of a candidate bundle uploaded for review.
//
// The pages are rendered in the server with html/template from templates
// embedded in the binary, with one small script (progressive: every page
// works without it). Each page calls the same service implementations a
// Connect client reaches (AuditService, ConsentService, AccessService,
// BundleService, DecisionService) and is authorized by their procedure
// names with [server.Authorize], so the --callers file that grants a
// service grants its pages. The server's guard authenticates every request
// first (mutual TLS, bearer token); with no caller authentication
// configured only loopback clients are answered. With bearer tokens a
// browser signs in at [SignInPath] and [BearerCookie] sends its token on
// console requests only. Every write (every POST:
// searches too, so that patient identifiers stay out of URLs and browser
// history) needs a CSRF token bound to a cookie and the caller, and an
// Origin (or Referer) of the console's own origin.
//
// Create it with [New] and mount [Console] at [Prefix] with
// server.WithHTTPHandler, listing [Prefix] in server.GuardConfig's
// SelfAuthorized.
package console
