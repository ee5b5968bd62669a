// Package policytest runs policy test suites against a policy bundle through
// the real decision engine: the runner behind `chaperone test`, and the gate
// `chaperone bundle build` uses to refuse a bundle whose tests fail.
//
// A suite is a YAML file named *_test.yaml anywhere under the bundle
// directory; [SuiteFormat] documents every key with an example (a test
// runs it against the reference bundle). In short:
//
//	name: break-glass
//	now: 2025-01-15T17:00:00Z          # clock for requests without context.time (optional)
//	fixtures:                           # paths relative to the suite file (optional)
//	  consents: [fixtures/consents/deny-52.json]   # FHIR Consent JSON, files or directories
//	  grants: [fixtures/grants.yaml]               # break-glass grants
//	  agreements: [fixtures/agreements.yaml]       # vendor agreements
//	  relationships: [fixtures/relationships.yaml] # treating relationships
//	tests:
//	  - name: clinician with a reason overrides the consent deny
//	    request: { ...a CheckRequest in its proto3 JSON shape, written as YAML... }
//	    want:
//	      decision: ALLOW                # or DENY
//	      reasons: [BREAK_GLASS_REASON_REQUIRED, {code: POLICY_PERMIT, policyId: break-glass-emergency-access}]
//	      obligations: {auditTags: [BREAK_GLASS], maskPaths: [...], redactLabels: [{system: ..., code: ...}], perEntryCheck: true}
//	      exact: [reasons, maskPaths]    # optional: nothing beyond what is listed (reasons, obligations, or one obligation kind)
//	      absent: {auditTags: [DISCLOSURE], reasons: [NO_PERMIT]}  # optional: none of these
//	    skip: "why this case is parked"  # optional
//
// Every fixture of a suite is loaded into in-memory stores (consents in a
// [consentstore.Memory], agreements in an [access.Memory], grants in a
// runner-owned store with [access.Grant.ActiveAt] semantics) behind a fresh
// [engine.Engine]; every
// request is validated with the API's protovalidate rules and decided with
// [engine.Engine.Explain]. A test passes when the decision is the wanted
// one, every wanted reason is among the response's reasons (a string matches
// a reason code; an object matches its code and policy id), and every wanted
// obligation is among the response's obligations (subset semantics). With
// exact: [reasons], a response reason that no wanted reason matches fails
// the test; with exact: [obligations], so does a mask path, audit tag or
// redacted label not wanted, or a perEntryCheck other than wanted (no
// obligations listed: the response must carry none). exact may name one
// obligation kind instead (maskPaths, auditTags, redactLabels,
// perEntryCheck): exact: [maskPaths] without maskPaths asserts "no mask"
// and leaves the tags free. absent lists reasons, mask paths, audit tags
// and labels that must not appear, e.g. no DISCLOSURE tag on a read inside
// the subject's own organization.
//
// [Run] returns a [Summary]; a suite file that cannot be read, parsed or
// validated is an error naming the file and line ([*SuiteError]), reported
// before any test runs. [WriteText], [WriteJSON] and [WriteJUnit] render a
// summary; [Summary.Coverage] counts, per policy id of the bundle, the tests
// whose decision involved it (from the response reasons and the engine's
// trace of every layer).
//
// [Prepare] parses the suites and loads their fixtures once, for running
// them against many bundles: each [Runner] (one per goroutine) decides
// with engines of its own and stops at the first failing test
// ([Runner.FirstFailure]); `chaperone test --mutate` (package mutate) is
// built on it.
package policytest
