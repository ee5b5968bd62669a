// Package fhirrest maps a FHIR RESTful request, as a gateway sees it
// (method, raw path, raw query and, where the gateway forwards it, the
// body), to what a CheckRequest asks: the interaction ([fhir.Interaction]),
// the resource type and id, the patient whose compartment the request is
// bound to, and whether the answer must be decided entry by entry.
//
// A [Mapper] is built once for the FHIR base path behind the gateway
// ([New]) and is safe for concurrent use. [Mapper.Map] maps one request;
// [Mapper.MapAll] also maps a batch or transaction Bundle, one [Mapped]
// per entry.
//
// # What is mapped
//
//	GET T/id                       read (HEAD too)
//	GET T/id/_history/v            vread
//	GET T, POST T/_search          search (the form body counts as parameters)
//	GET Patient/p/T, POST .../_search, GET Patient/p/*   compartment search
//	GET T/id/_history, T/_history, _history              history
//	POST T                         create
//	PUT T/id, PATCH T/id, DELETE T/id                    update, patch, delete
//	GET metadata                   capabilities, as a read of CapabilityStatement
//	GET|POST $export, Patient/$export, Group/id/$export  export
//	GET|POST [T[/id]]/$op          operation
//	POST [base] with a Bundle      batch/transaction, through MapAll
//
// The patient comes from the path (Patient/p and everything under it) or
// from the search parameters patient=, subject= when it references a
// Patient, and _id= on a Patient search. _format, _pretty, _summary and
// _elements change only the form of an answer and are accepted anywhere.
//
// # Per-entry checks
//
// [Mapped.PerEntryCheck] is set whenever the request does not fix which
// resources come back: every search, history, export and operation,
// except a compartment search Patient/p/T of a type whose members hold only
// that patient's data (not Patient, Person or Group, which link other
// patients) without _include or _revinclude. A patient= or subject=
// parameter names the patient but does not clear the flag: a FHIR server
// may ignore a search parameter it does not support (lenient handling is
// the default), so only the compartment in the path bounds the answer.
// Reads and writes by id name their one target and are not flagged; the
// door that decides them needs the target's attributes.
//
// # What is refused
//
// Whatever cannot be mapped safely is a [*RefusedError] whose [Reason]
// says why; errors.Is matches the sentinels ([ErrEncodedSlash], ...). The
// error text never carries an id or a parameter value. Refused are:
//
//   - any percent-encoding in the path (%2F, %2E and %25 with their own
//     reasons; no FHIR path segment needs one), dot segments, empty
//     segments, bytes outside printable ASCII, a path outside the base;
//   - %25 anywhere in the query or form body (double encoding), and a raw
//     ";" or "#" there (some servers split parameters at ";");
//   - ids and versions outside [A-Za-z0-9\-\.]{1,64}; resource types that are
//     not FHIR R4 or R5 types in their one spelling ([fhir.IsResourceType]);
//   - methods that have no interaction at the path, conditional update,
//     patch and delete (PUT/PATCH/DELETE T?criteria), search parameters on
//     reads and writes by id;
//   - _has (reverse chaining), chained parameters (subject.name=,
//     subject:Patient.name=), _filter, _query and _method;
//   - _include and _revinclude with a wildcard, :iterate or :recurse, or a
//     value that is not Type:param[:TargetType]: the rest is mapped and
//     flagged for per-entry checks, since included resources lie outside
//     the searched set;
//   - $graphql (in any case), $export other than at the system, Patient and
//     Group/id levels or with _typeFilter or a body;
//   - a patient= that is not a Patient reference; a modifier on patient or
//     subject other than a resource type (:missing, :not and :identifier
//     invert or loosen the match); absolute or versioned references; a list
//     naming a patient; two different patients; a patient parameter naming
//     another patient than the path's compartment;
//   - POST _search without its body and a batch or transaction without its
//     Bundle (what they ask is in the body); a Bundle that is not a batch or
//     transaction, repeats a member (compared without case), holds more than
//     [MaxEntries] entries, or has one entry that is refused, conditional
//     (ifNoneExist) or a POST _search.
//
// The mapper sees no headers. A door must refuse or decide what they add:
// a conditional create (If-None-Exist carries a search) and a method
// override (X-HTTP-Method-Override, which some servers honour, would run
// another interaction than the one mapped). It reads JSON Bundles and form
// bodies only; an XML Bundle is refused.
package fhirrest
