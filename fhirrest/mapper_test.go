package fhirrest_test

import (
	"errors"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/fhirrest"
)

func newMapper(t testing.TB) *fhirrest.Mapper {
	t.Helper()
	m, err := fhirrest.New("/fhir")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type mapCase struct {
	name                string
	method, path, query string
	body                string
	want                fhirrest.Mapped
	err                 error
}

// The interactions of the FHIR RESTful API (R4 and R5 http.html, the
// summary table of interactions): at instance level read, vread, update,
// patch, delete and history; at type level create, search and history;
// at system level capabilities, batch/transaction, history and search;
// compartment search; conditional create, update, patch and delete; and
// operations at every level, with the Bulk Data $export among them.
var interactionCases = []mapCase{
	// instance level
	{name: "read", method: "GET", path: "/fhir/Observation/o1",
		want: fhirrest.Mapped{Action: fhir.Read, Type: "Observation", ID: "o1"}},
	{name: "read head", method: "HEAD", path: "/fhir/Observation/o1",
		want: fhirrest.Mapped{Action: fhir.Read, Type: "Observation", ID: "o1"}},
	{name: "read patient", method: "GET", path: "/fhir/Patient/p1",
		want: fhirrest.Mapped{Action: fhir.Read, Type: "Patient", ID: "p1", Patient: "Patient/p1"}},
	{name: "read with form params", method: "GET", path: "/fhir/Observation/o1", query: "_format=json&_summary=true&_elements=code,value&_pretty=true",
		want: fhirrest.Mapped{Action: fhir.Read, Type: "Observation", ID: "o1"}},
	{name: "read id with dots and dashes", method: "GET", path: "/fhir/Observation/a-1.b",
		want: fhirrest.Mapped{Action: fhir.Read, Type: "Observation", ID: "a-1.b"}},
	{name: "vread", method: "GET", path: "/fhir/Observation/o1/_history/3",
		want: fhirrest.Mapped{Action: fhir.Vread, Type: "Observation", ID: "o1", VersionID: "3"}},
	{name: "vread patient", method: "GET", path: "/fhir/Patient/p1/_history/2",
		want: fhirrest.Mapped{Action: fhir.Vread, Type: "Patient", ID: "p1", VersionID: "2", Patient: "Patient/p1"}},
	{name: "update", method: "PUT", path: "/fhir/Observation/o1", body: `{"resourceType":"Observation"}`,
		want: fhirrest.Mapped{Action: fhir.Update, Type: "Observation", ID: "o1"}},
	{name: "patch", method: "PATCH", path: "/fhir/Patient/p1",
		want: fhirrest.Mapped{Action: fhir.Patch, Type: "Patient", ID: "p1", Patient: "Patient/p1"}},
	{name: "delete", method: "DELETE", path: "/fhir/Observation/o1",
		want: fhirrest.Mapped{Action: fhir.Delete, Type: "Observation", ID: "o1"}},
	{name: "instance history", method: "GET", path: "/fhir/Observation/o1/_history", query: "_count=10&_since=2024-01-01",
		want: fhirrest.Mapped{Action: fhir.History, Type: "Observation", ID: "o1", PerEntryCheck: true}},
	{name: "patient history", method: "GET", path: "/fhir/Patient/p1/_history",
		want: fhirrest.Mapped{Action: fhir.History, Type: "Patient", ID: "p1", Patient: "Patient/p1", PerEntryCheck: true}},
	// type level
	{name: "create", method: "POST", path: "/fhir/Observation", body: `{"resourceType":"Observation"}`,
		want: fhirrest.Mapped{Action: fhir.Create, Type: "Observation"}},
	{name: "search", method: "GET", path: "/fhir/Observation", query: "code=1234-5&_count=5&_sort=-date",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "search empty query", method: "GET", path: "/fhir/Observation",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "search by patient", method: "GET", path: "/fhir/Observation", query: "patient=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search by patient reference", method: "GET", path: "/fhir/Observation", query: "patient=Patient/p1&code=x",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search by encoded patient reference", method: "GET", path: "/fhir/Observation", query: "patient=Patient%2Fp1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search by patient:Patient", method: "GET", path: "/fhir/Observation", query: "patient:Patient=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search by subject patient", method: "GET", path: "/fhir/Observation", query: "subject=Patient/p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search by subject:Patient", method: "GET", path: "/fhir/Observation", query: "subject:Patient=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search by subject group", method: "GET", path: "/fhir/Observation", query: "subject=Group/g1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "search by subject:Group", method: "GET", path: "/fhir/Observation", query: "subject:Group=g1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "search by bare subject", method: "GET", path: "/fhir/Observation", query: "subject=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "search same patient twice", method: "GET", path: "/fhir/Observation", query: "patient=p1&subject=Patient/p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search Patient by _id", method: "GET", path: "/fhir/Patient", query: "_id=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Patient", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search with include", method: "GET", path: "/fhir/Observation", query: "patient=p1&_include=Observation:performer",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search with typed revinclude", method: "GET", path: "/fhir/Patient", query: "_revinclude=Provenance:target:Patient",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Patient", PerEntryCheck: true}},
	{name: "search encoded semicolon in a value", method: "GET", path: "/fhir/Observation", query: "code=x%3By",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "search with modifiers", method: "GET", path: "/fhir/Condition", query: "code:text=asthma&onset-date=ge2020&_total=accurate",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Condition", PerEntryCheck: true}},
	{name: "search POST", method: "POST", path: "/fhir/Observation/_search", body: "patient=Patient%2Fp1&code=x",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "search POST with query and body", method: "POST", path: "/fhir/Observation/_search", query: "_count=5", body: "code=x",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "type history", method: "GET", path: "/fhir/Observation/_history", query: "_since=2024-01-01",
		want: fhirrest.Mapped{Action: fhir.History, Type: "Observation", PerEntryCheck: true}},
	// compartment
	{name: "compartment search", method: "GET", path: "/fhir/Patient/p1/Observation", query: "code=x",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1"}},
	{name: "compartment search same patient param", method: "GET", path: "/fhir/Patient/p1/Observation", query: "patient=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1"}},
	{name: "compartment search POST", method: "POST", path: "/fhir/Patient/p1/Condition/_search", body: "code=x",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Condition", Patient: "Patient/p1"}},
	{name: "compartment search include", method: "GET", path: "/fhir/Patient/p1/Observation", query: "_include=Observation:performer",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "compartment all types", method: "GET", path: "/fhir/Patient/p1/*",
		want: fhirrest.Mapped{Action: fhir.Search, Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "compartment linked patients", method: "GET", path: "/fhir/Patient/p1/Patient",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Patient", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "compartment group", method: "GET", path: "/fhir/Patient/p1/Group",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Group", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "encounter compartment", method: "GET", path: "/fhir/Encounter/e1/Observation",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", PerEntryCheck: true}},
	{name: "practitioner compartment", method: "GET", path: "/fhir/Practitioner/d1/Observation", query: "patient=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true}},
	// system level
	{name: "capabilities", method: "GET", path: "/fhir/metadata", query: "mode=full",
		want: fhirrest.Mapped{Action: fhir.Read, Type: "CapabilityStatement", Capabilities: true}},
	{name: "system search", method: "GET", path: "/fhir", query: "_type=Observation,Condition&patient=p1",
		want: fhirrest.Mapped{Action: fhir.Search, Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "system search trailing slash", method: "GET", path: "/fhir/", query: "_type=Observation",
		want: fhirrest.Mapped{Action: fhir.Search, PerEntryCheck: true}},
	{name: "system search POST", method: "POST", path: "/fhir/_search", body: "_type=Observation",
		want: fhirrest.Mapped{Action: fhir.Search, PerEntryCheck: true}},
	{name: "system history", method: "GET", path: "/fhir/_history", query: "_count=100",
		want: fhirrest.Mapped{Action: fhir.History, PerEntryCheck: true}},
	// bulk data export
	{name: "system export", method: "GET", path: "/fhir/$export", query: "_type=Observation&_since=2024-01-01T00:00:00Z&_outputFormat=application/fhir%2Bndjson",
		want: fhirrest.Mapped{Action: fhir.Export, Operation: "export", PerEntryCheck: true}},
	{name: "patient export", method: "GET", path: "/fhir/Patient/$export",
		want: fhirrest.Mapped{Action: fhir.Export, Type: "Patient", Operation: "export", PerEntryCheck: true}},
	{name: "group export", method: "POST", path: "/fhir/Group/g1/$export",
		want: fhirrest.Mapped{Action: fhir.Export, Type: "Group", ID: "g1", Operation: "export", PerEntryCheck: true}},
	// operations
	{name: "system operation", method: "POST", path: "/fhir/$convert",
		want: fhirrest.Mapped{Action: fhir.Operation, Operation: "convert", PerEntryCheck: true}},
	{name: "type operation", method: "POST", path: "/fhir/Patient/$match",
		want: fhirrest.Mapped{Action: fhir.Operation, Type: "Patient", Operation: "match", PerEntryCheck: true}},
	{name: "type operation GET", method: "GET", path: "/fhir/Observation/$lastn", query: "patient=p1&max=3",
		want: fhirrest.Mapped{Action: fhir.Operation, Type: "Observation", Operation: "lastn", PerEntryCheck: true}},
	{name: "instance operation", method: "GET", path: "/fhir/Patient/p1/$everything", query: "_since=2024-01-01",
		want: fhirrest.Mapped{Action: fhir.Operation, Type: "Patient", ID: "p1", Operation: "everything", Patient: "Patient/p1", PerEntryCheck: true}},
	{name: "instance operation with dash", method: "POST", path: "/fhir/Observation/o1/$meta-add",
		want: fhirrest.Mapped{Action: fhir.Operation, Type: "Observation", ID: "o1", Operation: "meta-add", PerEntryCheck: true}},
}

var refusedCases = []mapCase{
	// path encoding
	{name: "encoded slash in id", method: "GET", path: "/fhir/Observation/o1%2F..%2FPatient", err: fhirrest.ErrEncodedSlash},
	{name: "encoded slash lower case", method: "GET", path: "/fhir/Patient%2fp1", err: fhirrest.ErrEncodedSlash},
	{name: "encoded dot", method: "GET", path: "/fhir/Observation/%2E%2E", err: fhirrest.ErrEncodedDot},
	{name: "encoded dot in id", method: "GET", path: "/fhir/Observation/o%2e1", err: fhirrest.ErrEncodedDot},
	{name: "double encoding in path", method: "GET", path: "/fhir/Observation/o%252F1", err: fhirrest.ErrDoubleEncoding},
	{name: "double encoding in query", method: "GET", path: "/fhir/Observation", query: "patient=Patient%252Fp1", err: fhirrest.ErrDoubleEncoding},
	{name: "double encoding in form body", method: "POST", path: "/fhir/Observation/_search", body: "patient=Patient%252Fp1", err: fhirrest.ErrDoubleEncoding},
	{name: "encoded letter", method: "GET", path: "/fhir/%50atient/p1", err: fhirrest.ErrEncodedPath},
	{name: "encoded dollar", method: "GET", path: "/fhir/%24export", err: fhirrest.ErrEncodedPath},
	{name: "malformed escape", method: "GET", path: "/fhir/Patient/p1%", err: fhirrest.ErrBadPath},
	{name: "dot segment", method: "GET", path: "/fhir/Observation/../Patient/p1", err: fhirrest.ErrDotSegment},
	{name: "dot segment before base", method: "GET", path: "/x/../fhir/Patient/p1", err: fhirrest.ErrDotSegment},
	{name: "single dot segment", method: "GET", path: "/fhir/./Patient/p1", err: fhirrest.ErrDotSegment},
	{name: "empty segment", method: "GET", path: "/fhir//Patient/p1", err: fhirrest.ErrEmptySegment},
	{name: "trailing slash", method: "GET", path: "/fhir/Patient/p1/", err: fhirrest.ErrEmptySegment},
	{name: "backslash", method: "GET", path: "/fhir/Patient\\p1", err: fhirrest.ErrBadPath},
	{name: "space", method: "GET", path: "/fhir/Patient/p 1", err: fhirrest.ErrBadPath},
	{name: "query in path", method: "GET", path: "/fhir/Patient?x=1", err: fhirrest.ErrBadPath},
	{name: "relative path", method: "GET", path: "fhir/Patient/p1", err: fhirrest.ErrBadPath},
	{name: "absolute URI", method: "GET", path: "http://h/fhir/Patient/p1", err: fhirrest.ErrBadPath},
	{name: "non-ASCII", method: "GET", path: "/fhir/Patient/p\u00e91", err: fhirrest.ErrBadPath},
	// base
	{name: "outside base", method: "GET", path: "/admin/Patient/p1", err: fhirrest.ErrOutsideBase},
	{name: "base prefix only", method: "GET", path: "/fhirx/Patient/p1", err: fhirrest.ErrOutsideBase},
	{name: "root outside base", method: "GET", path: "/", err: fhirrest.ErrOutsideBase},
	// ids and types
	{name: "id too long", method: "GET", path: "/fhir/Observation/" + string(make65()), err: fhirrest.ErrBadID},
	{name: "id with underscore", method: "GET", path: "/fhir/Observation/o_1", err: fhirrest.ErrBadID},
	{name: "id with semicolon", method: "GET", path: "/fhir/Observation/o1;x=y", err: fhirrest.ErrBadID},
	{name: "bad version id", method: "GET", path: "/fhir/Observation/o1/_history/v_1", err: fhirrest.ErrBadID},
	{name: "lower-case type", method: "GET", path: "/fhir/observation/o1", err: fhirrest.ErrUnknownType},
	{name: "unknown type", method: "GET", path: "/fhir/Foo", err: fhirrest.ErrUnknownType},
	{name: "abstract type", method: "GET", path: "/fhir/Resource/r1", err: fhirrest.ErrUnknownType},
	{name: "unknown compartment type", method: "GET", path: "/fhir/Patient/p1/observation", err: fhirrest.ErrUnknownType},
	{name: "type outside patient compartment", method: "GET", path: "/fhir/Patient/p1/Practitioner", err: fhirrest.ErrNotInCompartment},
	{name: "not a compartment", method: "GET", path: "/fhir/Observation/o1/Patient", err: fhirrest.ErrUnknownInteraction},
	{name: "too deep", method: "GET", path: "/fhir/Patient/p1/Observation/o1", err: fhirrest.ErrUnknownInteraction},
	{name: "after version", method: "GET", path: "/fhir/Observation/o1/_history/1/x", err: fhirrest.ErrUnknownInteraction},
	{name: "unknown system segment", method: "GET", path: "/fhir/_other", err: fhirrest.ErrUnknownInteraction},
	// methods
	{name: "unknown method", method: "OPTIONS", path: "/fhir/Patient/p1", err: fhirrest.ErrMethod},
	{name: "lower-case method", method: "get", path: "/fhir/Patient/p1", err: fhirrest.ErrMethod},
	{name: "POST on instance", method: "POST", path: "/fhir/Patient/p1", err: fhirrest.ErrMethod},
	{name: "PUT without id", method: "PUT", path: "/fhir/Patient", err: fhirrest.ErrMethod},
	{name: "DELETE history", method: "DELETE", path: "/fhir/Patient/p1/_history", err: fhirrest.ErrMethod},
	{name: "PUT vread", method: "PUT", path: "/fhir/Patient/p1/_history/1", err: fhirrest.ErrMethod},
	{name: "GET _search", method: "GET", path: "/fhir/Observation/_search", err: fhirrest.ErrMethod},
	{name: "DELETE operation", method: "DELETE", path: "/fhir/Patient/p1/$everything", err: fhirrest.ErrMethod},
	{name: "PUT compartment", method: "PUT", path: "/fhir/Patient/p1/Observation", err: fhirrest.ErrMethod},
	{name: "PUT metadata", method: "PUT", path: "/fhir/metadata", err: fhirrest.ErrMethod},
	// conditional interactions
	{name: "conditional update", method: "PUT", path: "/fhir/Observation", query: "identifier=x", err: fhirrest.ErrConditional},
	{name: "conditional patch", method: "PATCH", path: "/fhir/Observation", query: "identifier=x", err: fhirrest.ErrConditional},
	{name: "conditional delete", method: "DELETE", path: "/fhir/Observation", query: "identifier=x", err: fhirrest.ErrConditional},
	{name: "system conditional delete", method: "DELETE", path: "/fhir", query: "identifier=x", err: fhirrest.ErrConditional},
	// batch, POST search without body
	{name: "batch through Map", method: "POST", path: "/fhir", body: `{"resourceType":"Bundle","type":"batch"}`, err: fhirrest.ErrBatch},
	{name: "POST search without body", method: "POST", path: "/fhir/Observation/_search", err: fhirrest.ErrBodyRequired},
	{name: "POST system search without body", method: "POST", path: "/fhir/_search", query: "_type=Observation", err: fhirrest.ErrBodyRequired},
	// parameters
	{name: "reverse chain", method: "GET", path: "/fhir/Patient", query: "_has:Observation:patient:code=1234", err: fhirrest.ErrReverseChain},
	{name: "encoded reverse chain", method: "GET", path: "/fhir/Patient", query: "_h%61s:Observation:patient:code=1234", err: fhirrest.ErrReverseChain},
	{name: "reverse chain in form body", method: "POST", path: "/fhir/Patient/_search", body: "_has:Observation:patient:code=1234", err: fhirrest.ErrReverseChain},
	{name: "chained", method: "GET", path: "/fhir/Observation", query: "subject.name=peter", err: fhirrest.ErrChained},
	{name: "typed chain", method: "GET", path: "/fhir/Observation", query: "subject:Patient.name=peter", err: fhirrest.ErrChained},
	{name: "encoded chain", method: "GET", path: "/fhir/Observation", query: "subject%2Ename=peter", err: fhirrest.ErrChained},
	{name: "include wildcard", method: "GET", path: "/fhir/Observation", query: "_include=*", err: fhirrest.ErrInclude},
	{name: "revinclude wildcard", method: "GET", path: "/fhir/Patient", query: "_revinclude=*", err: fhirrest.ErrInclude},
	{name: "include type wildcard", method: "GET", path: "/fhir/Observation", query: "_include=Observation:*", err: fhirrest.ErrInclude},
	{name: "include iterate", method: "GET", path: "/fhir/Observation", query: "_include:iterate=Observation:subject", err: fhirrest.ErrInclude},
	{name: "include unknown type", method: "GET", path: "/fhir/Observation", query: "_include=observation:subject", err: fhirrest.ErrInclude},
	{name: "include malformed", method: "GET", path: "/fhir/Observation", query: "_include=subject", err: fhirrest.ErrInclude},
	{name: "include on operation", method: "GET", path: "/fhir/Patient/p1/$everything", query: "_include=*", err: fhirrest.ErrInclude},
	{name: "filter", method: "GET", path: "/fhir/Observation", query: "_filter=subject.name%20eq%20x", err: fhirrest.ErrParameter},
	{name: "upper-case reverse chain", method: "GET", path: "/fhir/Patient", query: "_HAS:Observation:patient:code=1234", err: fhirrest.ErrReverseChain},
	{name: "upper-case filter", method: "GET", path: "/fhir/Observation", query: "_Filter=x", err: fhirrest.ErrParameter},
	{name: "upper-case include wildcard", method: "GET", path: "/fhir/Observation", query: "_INCLUDE=*", err: fhirrest.ErrInclude},
	{name: "method override", method: "GET", path: "/fhir/Observation/o1", query: "_method=DELETE", err: fhirrest.ErrParameter},
	{name: "named query", method: "GET", path: "/fhir/Observation", query: "_query=custom", err: fhirrest.ErrParameter},
	{name: "_type on a type search", method: "GET", path: "/fhir/Observation", query: "_type=Patient", err: fhirrest.ErrParameter},
	{name: "_type unknown", method: "GET", path: "/fhir", query: "_type=observation", err: fhirrest.ErrUnknownType},
	{name: "search parameter on read", method: "GET", path: "/fhir/Observation/o1", query: "patient=p2", err: fhirrest.ErrParameter},
	{name: "search parameter on delete", method: "DELETE", path: "/fhir/Observation/o1", query: "code=x", err: fhirrest.ErrParameter},
	{name: "search parameter on create", method: "POST", path: "/fhir/Observation", query: "code=x", err: fhirrest.ErrParameter},
	{name: "bad parameter name", method: "GET", path: "/fhir/Observation", query: "a:b:c=1", err: fhirrest.ErrBadQuery},
	{name: "semicolon separator", method: "GET", path: "/fhir/Observation", query: "code=x;_has:Observation:patient:code=y", err: fhirrest.ErrBadQuery},
	{name: "encoded semicolon in a value", method: "GET", path: "/fhir/Observation", query: "code=x%3By&patient=Patient/p1;x", err: fhirrest.ErrBadQuery},
	{name: "empty parameter name", method: "GET", path: "/fhir/Observation", query: "=1", err: fhirrest.ErrBadQuery},
	{name: "malformed query escape", method: "GET", path: "/fhir/Observation", query: "code=%zz", err: fhirrest.ErrBadQuery},
	{name: "JSON body for POST search", method: "POST", path: "/fhir/Observation/_search", body: `{"patient":"p1"}`, err: fhirrest.ErrBadQuery},
	// graphql
	{name: "graphql system", method: "GET", path: "/fhir/$graphql", query: "query=x", err: fhirrest.ErrGraphQL},
	{name: "graphql instance", method: "POST", path: "/fhir/Patient/p1/$graphql", err: fhirrest.ErrGraphQL},
	{name: "graphql mixed case", method: "GET", path: "/fhir/$GraphQL", err: fhirrest.ErrGraphQL},
	// export outside its levels and with what it cannot map
	{name: "export of a type", method: "GET", path: "/fhir/Observation/$export", err: fhirrest.ErrUnknownInteraction},
	{name: "export of one patient", method: "GET", path: "/fhir/Patient/p1/$export", err: fhirrest.ErrUnknownInteraction},
	{name: "export of all groups", method: "GET", path: "/fhir/Group/$export", err: fhirrest.ErrUnknownInteraction},
	{name: "export type filter", method: "GET", path: "/fhir/$export", query: "_typeFilter=Observation%3Fcode%3Dx", err: fhirrest.ErrParameter},
	{name: "export body", method: "POST", path: "/fhir/$export", body: `{"resourceType":"Parameters"}`, err: fhirrest.ErrParameter},
	{name: "bad operation name", method: "GET", path: "/fhir/$1x", err: fhirrest.ErrUnknownInteraction},
	// patient parameters
	{name: "patient not a Patient", method: "GET", path: "/fhir/Observation", query: "patient=Group/g1", err: fhirrest.ErrPatientParameter},
	{name: "patient:Group", method: "GET", path: "/fhir/Observation", query: "patient:Group=g1", err: fhirrest.ErrPatientParameter},
	{name: "patient:missing", method: "GET", path: "/fhir/Observation", query: "patient:missing=true", err: fhirrest.ErrPatientParameter},
	{name: "patient:not", method: "GET", path: "/fhir/Observation", query: "patient:not=p1", err: fhirrest.ErrPatientParameter},
	{name: "subject:identifier", method: "GET", path: "/fhir/Observation", query: "subject:identifier=x|1", err: fhirrest.ErrPatientParameter},
	{name: "patient absolute", method: "GET", path: "/fhir/Observation", query: "patient=https://other.example/fhir/Patient/p1", err: fhirrest.ErrPatientParameter},
	{name: "patient versioned", method: "GET", path: "/fhir/Observation", query: "patient=Patient/p1/_history/1", err: fhirrest.ErrPatientParameter},
	{name: "patient type mismatch", method: "GET", path: "/fhir/Observation", query: "subject:Patient=Group/g1", err: fhirrest.ErrPatientParameter},
	{name: "patient empty", method: "GET", path: "/fhir/Observation", query: "patient=", err: fhirrest.ErrBadID},
	{name: "patient bad id", method: "GET", path: "/fhir/Observation", query: "patient=p_1", err: fhirrest.ErrBadID},
	{name: "patient list", method: "GET", path: "/fhir/Observation", query: "patient=p1,p2", err: fhirrest.ErrMultiplePatients},
	{name: "subject list with a patient", method: "GET", path: "/fhir/Observation", query: "subject=Group/g1,Patient/p2", err: fhirrest.ErrMultiplePatients},
	{name: "two patients", method: "GET", path: "/fhir/Observation", query: "patient=p1&patient=p2", err: fhirrest.ErrMultiplePatients},
	{name: "patient and subject differ", method: "GET", path: "/fhir/Observation", query: "patient=p1&subject=Patient/p2", err: fhirrest.ErrMultiplePatients},
	{name: "patient in body and query differ", method: "POST", path: "/fhir/Observation/_search", query: "patient=p1", body: "patient=p2", err: fhirrest.ErrMultiplePatients},
	{name: "compartment conflict", method: "GET", path: "/fhir/Patient/p1/Observation", query: "patient=p2", err: fhirrest.ErrPatientConflict},
	{name: "compartment conflict subject", method: "GET", path: "/fhir/Patient/p1/Observation", query: "subject=Patient/p2", err: fhirrest.ErrPatientConflict},
	{name: "Patient _id list", method: "GET", path: "/fhir/Patient", query: "_id=p1,p2", err: fhirrest.ErrPatientParameter},
}

func make65() []byte {
	b := make([]byte, 65)
	for i := range b {
		b[i] = 'a'
	}
	return b
}

func TestMap(t *testing.T) {
	t.Parallel()
	m := newMapper(t)
	for _, tc := range append(append([]mapCase{}, interactionCases...), refusedCases...) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			got, err := m.Map(tc.method, tc.path, tc.query, body)
			if tc.err != nil {
				var r *fhirrest.RefusedError
				if !errors.Is(err, tc.err) || !errors.As(err, &r) {
					t.Fatalf("Map = %+v, %v; want %v", got, err, tc.err)
				}
				if got != (fhirrest.Mapped{}) {
					t.Errorf("a refusal returned %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if got != tc.want {
				t.Errorf("Map =\n %+v, want\n %+v", got, tc.want)
			}
			// MapAll agrees for every request that is not a batch.
			all, err := m.MapAll(tc.method, tc.path, tc.query, body)
			if err != nil || len(all) != 1 || all[0] != got {
				t.Errorf("MapAll = %+v, %v; want [%+v]", all, err, got)
			}
		})
	}
}

// Every interaction of fhir.Interactions is produced by some case.
func TestEveryInteractionCovered(t *testing.T) {
	t.Parallel()
	seen := map[fhir.Interaction]bool{}
	for _, tc := range interactionCases {
		seen[tc.want.Action] = true
	}
	for _, i := range fhir.Interactions {
		if !seen[i] {
			t.Errorf("no case maps to %s", i)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base string
		ok   bool
	}{
		{"", true}, {"/", true}, {"/fhir", true}, {"/fhir/", true}, {"/api/fhir/r4", true}, {"/fhir-r4.x~", true},
		{"fhir", false}, {"//fhir", false}, {"/fhir//r4", false}, {"/a/../fhir", false}, {"/fhir%2F", false},
		{"/fhir?x", false}, {"/f hir", false},
	} {
		_, err := fhirrest.New(tc.base)
		if (err == nil) != tc.ok {
			t.Errorf("New(%q) = %v, want ok %v", tc.base, err, tc.ok)
		}
		if err != nil && !errors.Is(err, fhirrest.ErrBadBase) {
			t.Errorf("New(%q) = %v, want ErrBadBase", tc.base, err)
		}
	}
}

func TestRootBase(t *testing.T) {
	t.Parallel()
	m, err := fhirrest.New("")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Map("GET", "/Patient/p1", "", nil)
	if err != nil || got != (fhirrest.Mapped{Action: fhir.Read, Type: "Patient", ID: "p1", Patient: "Patient/p1"}) {
		t.Errorf("Map = %+v, %v", got, err)
	}
	if _, err := m.Map("GET", "/fhir/Patient/p1", "", nil); !errors.Is(err, fhirrest.ErrUnknownType) {
		t.Errorf("Map under an unknown prefix = %v, want ErrUnknownType", err)
	}
}
