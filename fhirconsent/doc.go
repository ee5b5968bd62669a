// Package fhirconsent is the FHIR Consent model: it reads Consent resources
// (R4 and R5) and compiles them into an immutable form that decisions
// evaluate without re-parsing.
//
// [Parse] decodes one Consent, detects whether it is R4 or R5 from the
// elements it uses, validates it and compiles it into a [Consent]: the
// patient, status, scope, validity period and a tree of [Provision] values
// whose criteria are already normalised (reference strings reduced to
// "Type/id", code systems canonicalised, actions turned into bit sets,
// confidentiality codes into levels). Bad input is a [*ParseError] naming
// the element in FHIRPath form, e.g. "provision.actor[0].reference".
// [ParseMany] reads a single resource, a FHIR Bundle or NDJSON.
//
//	c, err := fhirconsent.Parse(data)
//	var pe *fhirconsent.ParseError
//	if errors.As(err, &pe) {
//		// pe.Path names the bad element
//	}
//
// The base rule of a consent is its [Consent.Root]: in R4 the root
// provision with its type (or, without one, the effect of policyRule), in
// R5 the consent's decision with the top-level provisions as its children.
// Nested provisions are exceptions to their parent: without a type of
// their own they carry the opposite effect. Without a type, an OPTIN/OPTOUT policyRule or an R5 decision the
// root has no effect ([Effect] zero): it decides nothing itself.
// Identifiers ([Identifier]) are compared by system and value
// ([Identifier.Matches]): a missing system matches only a missing system.
// [ValidID] is the FHIR id syntax; [Parse] refuses a resource whose id
// breaks it.
//
// A compiled consent is shared by concurrent decisions and must be treated
// as read-only; [Consent.WithID] makes the copy a store keeps.
//
// Storage lives in package github.com/chaperone-pdp/chaperone/consentstore,
// evaluation of a request against consents in package
// github.com/chaperone-pdp/chaperone/engine/consent.
package fhirconsent
