// Package pep is a FHIR policy enforcement point: it applies the
// obligations of a Chaperone decision to FHIR JSON before it is released.
//
// [Apply] takes the obligations of one resource-phase ALLOW and one
// resource; [ApplyBundle] and [ApplyBundleStream] filter a Bundle (search,
// history, batch-response) entry by entry with a [Decider] that decides
// every entry resource (one BatchCheck per batch); [ApplyNDJSON] does the
// same for bulk-data NDJSON, line by line.
//
// Every function is safe for concurrent use; none keeps state between
// calls. [Apply] returns its input slice itself when nothing had to change.
//
// The JSON is handled generically, never through typed FHIR structs:
// extensions, modifier extensions and elements this package does not know
// survive, members keep their input order, and numbers and strings keep
// their input bytes (1.50 stays 1.50). Input with a duplicate member name,
// invalid UTF-8 or nesting deeper than 512 is refused.
//
// # Masks
//
// A mask path is a dotted FHIR element path that starts with a resource
// type: "Patient.telecom", "Patient.name.given", "Patient.contact.name",
// "Observation.value[x]", "Observation.component.value[x]". A path starting
// with Resource or DomainResource ("DomainResource.text") applies to every
// resource type; a bare type ("Patient") withholds every resource of that
// type. Paths are read against the FHIR R4 and R5 element index (package
// fhir/elements) and must name an element of one of them; a path neither
// can interpret (a typo, a FHIRPath expression, a path rooted at a datatype
// such as "HumanName.family", an extension of a primitive) is an
// obligation Apply cannot carry out, and the resource is withheld.
//
// The element is removed wherever the path reaches it: through arrays at
// every level, in nested backbone elements, under every JSON name of a
// choice element (a path naming value[x], or any one variant such as
// valueQuantity, removes valueQuantity, valueString, ... of both releases),
// with its "_name" primitive sibling (id and extensions of a primitive).
// A member beside them that looks like a variant of the masked choice
// ("value" followed by an upper-case letter) but is neither a variant nor
// another element either release knows, such as the value of a type a
// later release adds, withholds the resource. Objects and arrays left
// empty are removed too; in a "_name" array, whose items line up with the
// primitive array, an emptied item becomes null.
// Masks are type-qualified: "Patient.telecom" applies to every Patient in
// the JSON, the resource itself and any Patient nested in it (contained,
// Bundle.entry.resource, Parameters.parameter.resource), and to nothing
// else. A path names one element, not a member name: "Patient.telecom"
// does not remove Patient.contact.telecom.
//
// When anything was masked in a resource, its narrative (text) is removed
// rather than regenerated, since the narrative may show what was masked,
// and its meta.security gets the label REDACTED of
// http://terminology.hl7.org/CodeSystem/v3-ObservationValue (once). A
// resource that contains a masked resource is marked the same way, as its
// narrative may render the contained one.
//
// # Labels
//
// A resource whose meta.security carries a label of redactLabels is
// withheld. Codes compare exactly; the systems must be equal, except that a
// label without a system matches the code in any system, and a resource
// coding without a system matches a label of that code in any system (when
// in doubt, withhold). A meta or meta.security that is not well formed
// counts as labelled. A labelled resource nested in another (contained, or
// an entry of a Bundle given to Apply) withholds the whole resource: a
// contained resource cannot be cut out without breaking the references to
// it. To remove single entries, use the Bundle variants.
//
// # Fail closed
//
// Apply never releases a resource it could not fully enforce. Withheld: an
// obligation it does not know (fields of a newer API, seen as unknown
// protobuf fields), a mask path it cannot interpret, a redact label
// without a code, a resource type neither release knows when masks are to
// be applied, a member that may be an unknown variant of a masked choice,
// a contained item or Bundle entry resource that is not a resource, a meta
// that cannot take the REDACTED label. Input that is not a JSON FHIR
// resource is an error, and withheld too. [CheckObligations] names the
// obligation Apply cannot carry out (a typo'd mask path, say), for the log
// of the enforcement point.
//
// perEntryCheck is set on request-phase decisions (the gateway decided
// from the URL, not the data) and on population requests. Apply cannot
// satisfy it: only the caller can decide each resource in the resource
// phase. Apply therefore withholds when it is set. Give Apply the
// obligations of the resource-phase decision of that very resource, and
// filter Bundles with [ApplyBundle], whose [Decider] makes those
// decisions.
//
// # Bundles and NDJSON
//
// [ApplyBundle] (in memory) and [ApplyBundleStream] (io.Reader to
// io.Writer) read a Bundle's entries in batches (default 1000, the most one
// BatchCheck takes; [WithBatchSize]) and call the [Decider] once per batch
// with the entry resources, in order:
//
//	out, withheld, err := pep.ApplyBundle(body, func(rs []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
//		reqs := make([]*chaperonev1.CheckRequest, len(rs))
//		for i, r := range rs {
//			reqs[i] = resourcePhaseRequest(r) // the patient, tenant and labels of r
//		}
//		return pdp.BatchCheck(ctx, reqs), nil
//	})
//
// An entry is released only when its response is DECISION_ALLOW and
// [Apply] of that response's obligations releases it; the entry then
// carries the masked resource. Every other entry is removed, and counted in
// withheld. When withheld > 0, Bundle.total is removed (it would tell how
// many were hidden); Bundle.signature is removed when any entry was
// withheld or masked (it no longer signs what is sent); when kept, each is
// written after entry. Entries without a resource (a deleted version in a
// history, a batch-response status) and OperationOutcome entries pass
// unchanged and are not decided; an entry
// resource that is itself a Bundle (a search inside a batch-response) is
// filtered the same way. Links are left alone: rewriting them is the
// caller's job. An error from the Decider, or a response count that differs
// from the resource count, fails the call.
//
// Memory: the Bundle variants hold one batch of entries at a time besides
// their input and output (ApplyBundle's buffers; nothing more with
// ApplyBundleStream); an entry is built into a tree only when its decision
// carries obligations; bodies over [WithMaxBytes] (default 64 MiB) fail with
// [ErrTooLarge]. [ApplyNDJSON] holds one batch of lines, each at most
// [WithMaxBytes]. On any error the streaming variants have written a
// truncated document to w that must not be released.
package pep
