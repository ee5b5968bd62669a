// Package proxy is a policy enforcement point in front of a FHIR server:
// an http.Handler ([Proxy]) that decides every request and every resource
// the server returns at the PDP, and releases only what the decisions
// allow, with their obligations applied. `chaperone proxy` serves it.
//
// # Request phase
//
// Each request is mapped and its end user's token verified by the gateway
// package (the gateway file of the doors: fhirBase, tokens, claims,
// purposeOfUse, tenantTagSystem), then decided with context.phase
// "request". A refusal of the mapper or the token, or a DENY, is answered
// 401 or 403 with an application/fhir+json OperationOutcome naming the
// reason codes, and the request never reaches the upstream. The proxy also
// refuses, with UNSUPPORTED_INTERACTION and a second code, what it cannot
// enforce: system-level history, $export, _elements and _contained,
// _summary other than false (a summary may leave out meta.security or the
// patient reference), _summary=count and _total=accurate (they count what
// filtering hides), on top of the mapper's refusals ($graphql, _has,
// chained parameters not allow-listed by the gateway file's
// chainedParameters, _include=*, conditional writes). XML is refused 406
// (_format or an Accept without JSON); the upstream is always asked for
// JSON and an answer in anything else is a 502.
//
// # Resource phase
//
// Every resource the upstream returns is decided with context.phase
// "resource" and the attributes it carries itself (package fhirattr): the
// patients of its Patient compartment (a Patient is its own), its owning
// organization (the tenant meta.tag, else Patient.managingOrganization)
// and its meta.security labels. A resource in several patients'
// compartments is decided once per patient and released only when every
// decision allows it, with the union of their obligations, applied by the
// [Applier] (pep.Apply). A resource whose attributes cannot be read, a
// Bundle, Parameters or Binary returned as a resource, and anything the
// applier withholds are not released.
//
//   - read, vread, metadata: the resource is decided (action read/vread)
//     and released, or the answer is 403.
//   - search, compartment search, operations such as $everything, history:
//     every entry resource of the page (matches, _include and _revinclude
//     entries alike; every version of a history) is decided in one
//     BatchCheck per page; denied and withheld entries are removed, an
//     entry without a resource (a deleted version) too, OperationOutcome
//     entries pass. Bundle.total is removed when anything was withheld or
//     the answer has other pages. The self, next and previous links and
//     the fullUrls are rewritten to the proxy (other links removed), so
//     each page is fetched, and authorized, through the proxy; a page that
//     filtering emptied keeps its next link.
//   - create, update, patch, delete: decided before they are forwarded, a
//     create with the body's attributes, an update with the stored
//     resource's and the body's (a move to another patient or tenant needs
//     both), a JSON Patch with the stored resource's and those of the
//     patched result the proxy computes, a delete with the stored
//     resource's. The stored version decided on is sent upstream as
//     If-Match, so a concurrent change fails the write; a client's
//     If-Match must name that version (else 412 VERSION_CONFLICT).
//     Conditional writes (If-None-Exist, PUT/PATCH/DELETE with criteria)
//     are refused CONDITIONAL. The answer carries status, Location, ETag
//     and Last-Modified, not the resource (Prefer: return=minimal).
//   - batch and transaction: every entry is decided in the request phase
//     (one BatchCheck) and every write entry in the resource phase before
//     anything is forwarded. A transaction with any refused entry is
//     refused whole (403). In a batch, refused entries are answered "403
//     Forbidden" with an OperationOutcome in the batch-response and never
//     forwarded; the others are forwarded as one batch and their answers
//     released as above (read results decided, search results filtered,
//     write results without their resource). PATCH entries are refused.
//
// # Headers
//
// X-Chaperone-Decision-Id names the request-phase decision;
// X-Chaperone-Decision-Ids the decisions the answer rests on (the first
// [MaxHeaderIDs]; X-Chaperone-Decisions counts them all); X-Request-Id
// the correlation id every one of them carries in the audit log (the
// client's own X-Request-Id when it is a plain token, else a new one);
// X-Chaperone-Audit-Tags the audit tags of the released resources;
// X-Chaperone-Withheld how many resources were left out. Every decision is
// made by the PDP through the [Decider] (the client package, without a
// cache), so each is in the PDP's audit log. The end user's token is not
// passed to the upstream.
package proxy
