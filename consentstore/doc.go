// Package consentstore reads FHIR Consent resources (R4 and R5), compiles
// them into an immutable form that decisions evaluate without re-parsing,
// and keeps them per patient.
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
// A [Store] keeps compiled consents by id and by patient. [Memory] is the
// in-memory implementation; the same behaviour is checked for every
// implementation by package storetest. [Store.ForPatient] is the hot-path
// read: the patient's consents that are not revoked, and a version string
// that changes on every write for the patient.
//
// Evaluation of a request against consents lives in package
// github.com/chaperone-pdp/chaperone/engine/consent.
package consentstore
