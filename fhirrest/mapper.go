package fhirrest

import (
	"errors"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
)

// ErrBadBase is returned by [New] for a base that is not "" or an absolute
// path of plain segments.
var ErrBadBase = errors.New("fhir base must be empty or an absolute path of segments of [A-Za-z0-9._~-]")

// Mapped is what one FHIR RESTful request asks, in the terms of a
// CheckRequest.
type Mapped struct {
	// Action is the interaction.
	Action fhir.Interaction
	// Type is the resource type; "" only for a system-level search, history,
	// export or operation, and for the search of a whole compartment
	// (Patient/p/*).
	Type string
	// ID is the resource id for an instance-level interaction, else "".
	ID string
	// VersionID is the version of a vread, else "".
	VersionID string
	// Operation is the name of an export or operation without its "$"
	// ("export", "everything"), else "".
	Operation string
	// Patient is the patient ("Patient/id") whose compartment the request
	// is bound to, from the path (Patient/p, Patient/p/T) or from the
	// search parameters; "" when it names none.
	Patient string
	// PerEntryCheck is set when the request alone does not fix which
	// resources the answer holds, so each one must be decided when it is
	// returned (the resource phase).
	PerEntryCheck bool
	// Capabilities is set for GET metadata, mapped as a read of
	// CapabilityStatement: it discloses no patient data.
	Capabilities bool
}

// Mapper maps FHIR RESTful requests under one base path. It is immutable
// and safe for concurrent use.
type Mapper struct {
	base   []string
	chains map[string]map[string]bool // type -> chained parameter names allowed
}

// New returns a Mapper for the FHIR API at base ("/fhir"; "" or "/" for
// the root of the host).
func New(base string, opts ...Option) (*Mapper, error) {
	m := &Mapper{}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, err
		}
	}
	base = strings.TrimSuffix(base, "/")
	if base == "" {
		return m, nil
	}
	if !strings.HasPrefix(base, "/") {
		return nil, ErrBadBase
	}
	segs := strings.Split(base[1:], "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, ErrBadBase
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(isLetter(c) || '0' <= c && c <= '9' || strings.IndexByte("._~-", c) >= 0) {
				return nil, ErrBadBase
			}
		}
	}
	m.base = segs
	return m, nil
}

// Map maps one request: its method, its raw path (escaped, as sent,
// without the query), its raw query (without "?") and its body, which is
// read only for a POST _search (an application/x-www-form-urlencoded
// form whose parameters count like query parameters). A batch or
// transaction is refused with [ErrBatch]: map it with [Mapper.MapAll].
// Every error is a [*RefusedError].
func (m *Mapper) Map(method, rawPath, rawQuery string, body []byte) (Mapped, error) {
	rel, err := m.rel(rawPath)
	if err != nil {
		return Mapped{}, err
	}
	if len(rel) == 0 && method == "POST" {
		return Mapped{}, ErrBatch
	}
	return mapRel(method, rel, m.unchain(method, rel, rawQuery), body)
}

func (m *Mapper) rel(rawPath string) ([]string, error) {
	segs, err := splitPath(rawPath)
	if err != nil {
		return nil, err
	}
	if len(segs) == 1 && segs[0] == "" {
		segs = nil // "/"
	}
	return relative(m.base, segs)
}

// compartments are the resource types that define a compartment, R4 and
// R5.
var compartments = map[string]bool{
	"Patient": true, "Encounter": true, "RelatedPerson": true, "Practitioner": true, "Device": true, "EpisodeOfCare": true,
}

// linkedPatients are the types of the patient compartment whose members
// can carry other patients' data (Patient and Person through link, Group
// through member): their compartment search needs per-entry checks.
var linkedPatients = map[string]bool{"Patient": true, "Person": true, "Group": true}

// mapRel maps a request whose path is rel, the segments under the base.
func mapRel(method string, rel []string, rawQuery string, body []byte) (Mapped, error) {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
	default:
		return Mapped{}, refuse(ReasonMethod, "unknown method")
	}
	read := method == "GET" || method == "HEAD"
	ps, err := parseParams(rawQuery)
	if err != nil {
		return Mapped{}, err
	}
	// POST _search: the form body is parameters too. Without it, what is
	// searched is unknown (it could reverse-chain), so it is refused.
	if method == "POST" && len(rel) > 0 && rel[len(rel)-1] == "_search" {
		if len(body) == 0 {
			return Mapped{}, refuse(ReasonBodyRequired, "POST _search without its form body")
		}
		more, err := parseParams(string(body))
		if err != nil {
			return Mapped{}, err
		}
		ps = append(ps, more...)
	}
	if len(rel) > 0 {
		if name, ok := operationName(rel[len(rel)-1]); ok && strings.EqualFold(name, "graphql") {
			return Mapped{}, ErrGraphQL
		}
	}

	switch len(rel) {
	case 0: // [base]
		switch {
		case read:
			return search("", "", ps, false)
		case method == "DELETE":
			return Mapped{}, refuse(ReasonConditional, "conditional delete at system level")
		}
		return Mapped{}, refuse(ReasonMethod, method+" on the base")
	case 1:
		return mapOne(method, read, rel[0], ps, body)
	}

	typ := rel[0]
	if !fhir.IsResourceType(typ) {
		return Mapped{}, unknownFirst(typ)
	}
	// [type]/_search, [type]/_history, [type]/$op
	switch second := rel[1]; {
	case second == "_search" && len(rel) == 2:
		if method != "POST" {
			return Mapped{}, refuse(ReasonMethod, method+" on _search")
		}
		return search(typ, "", ps, false)
	case second == "_history" && len(rel) == 2:
		if !read {
			return Mapped{}, refuse(ReasonMethod, method+" on _history")
		}
		if err := onlyParams(ps, historyParams, "history"); err != nil {
			return Mapped{}, err
		}
		return Mapped{Action: fhir.History, Type: typ, PerEntryCheck: true}, nil
	case strings.HasPrefix(second, "$") && len(rel) == 2:
		return operation(method, typ, "", second, ps, body)
	}

	id := rel[1]
	if err := checkID(id, "the resource id"); err != nil {
		return Mapped{}, err
	}
	patient := ""
	if typ == "Patient" {
		patient = "Patient/" + id
	}
	if len(rel) == 2 { // [type]/[id]
		out := Mapped{Type: typ, ID: id, Patient: patient}
		switch method {
		case "GET", "HEAD":
			out.Action = fhir.Read
		case "PUT":
			out.Action = fhir.Update
		case "PATCH":
			out.Action = fhir.Patch
		case "DELETE":
			out.Action = fhir.Delete
		default:
			return Mapped{}, refuse(ReasonMethod, method+" on an instance")
		}
		if err := onlyParams(ps, nil, string(out.Action)); err != nil {
			return Mapped{}, err
		}
		return out, nil
	}

	third := rel[2]
	switch {
	case third == "_history":
		if !read {
			return Mapped{}, refuse(ReasonMethod, method+" on _history")
		}
		if err := onlyParams(ps, historyParams, "history"); err != nil {
			return Mapped{}, err
		}
		switch len(rel) {
		case 3:
			// The versions of one resource may differ in their patient and
			// labels: each is decided when returned.
			return Mapped{Action: fhir.History, Type: typ, ID: id, Patient: patient, PerEntryCheck: true}, nil
		case 4:
			if err := checkID(rel[3], "the version id"); err != nil {
				return Mapped{}, err
			}
			return Mapped{Action: fhir.Vread, Type: typ, ID: id, VersionID: rel[3], Patient: patient}, nil
		}
		return Mapped{}, refuse(ReasonUnknownInteraction, "segments after a version")
	case strings.HasPrefix(third, "$") && len(rel) == 3:
		return operation(method, typ, id, third, ps, body)
	}

	// Compartment search: [compartment]/[id]/[type] and .../[type]/_search.
	if !compartments[typ] {
		return Mapped{}, refuse(ReasonUnknownInteraction, "a third segment under a type that defines no compartment")
	}
	switch {
	case len(rel) == 3 && read:
	case len(rel) == 4 && rel[3] == "_search" && method == "POST":
	case len(rel) > 4 || len(rel) == 4 && rel[3] != "_search":
		return Mapped{}, refuse(ReasonUnknownInteraction, "too many segments")
	default:
		return Mapped{}, refuse(ReasonMethod, method+" on a compartment")
	}
	target := third
	if target == "*" {
		if len(rel) != 3 {
			return Mapped{}, refuse(ReasonUnknownInteraction, "POST _search on a whole compartment")
		}
		target = ""
	} else if !fhir.IsResourceType(target) {
		return Mapped{}, refuse(ReasonUnknownType, "the type searched in the compartment")
	}
	if typ != "Patient" {
		// Other compartments bind the answer to no patient.
		return search(target, "", ps, false)
	}
	if target != "" && !fhir.InPatientCompartment(target) {
		return Mapped{}, refuse(ReasonNotInCompartment, target+" in the Patient compartment")
	}
	return search(target, patient, ps, true)
}

// mapOne maps a path of one segment: metadata, _search, _history, $op or a
// type.
func mapOne(method string, read bool, seg string, ps []param, body []byte) (Mapped, error) {
	switch {
	case seg == "metadata":
		if !read {
			return Mapped{}, refuse(ReasonMethod, method+" on metadata")
		}
		if err := onlyParams(ps, map[string]bool{"mode": true}, "metadata"); err != nil {
			return Mapped{}, err
		}
		return Mapped{Action: fhir.Read, Type: "CapabilityStatement", Capabilities: true}, nil
	case seg == "_search":
		if method != "POST" {
			return Mapped{}, refuse(ReasonMethod, method+" on _search")
		}
		return search("", "", ps, false)
	case seg == "_history":
		if !read {
			return Mapped{}, refuse(ReasonMethod, method+" on _history")
		}
		if err := onlyParams(ps, historyParams, "history"); err != nil {
			return Mapped{}, err
		}
		return Mapped{Action: fhir.History, PerEntryCheck: true}, nil
	case strings.HasPrefix(seg, "$"):
		return operation(method, "", "", seg, ps, body)
	}
	if !fhir.IsResourceType(seg) {
		return Mapped{}, unknownFirst(seg)
	}
	switch method {
	case "GET", "HEAD":
		return search(seg, "", ps, false)
	case "POST":
		if err := onlyParams(ps, nil, "create"); err != nil {
			return Mapped{}, err
		}
		return Mapped{Action: fhir.Create, Type: seg}, nil
	}
	// PUT, PATCH, DELETE [type]?criteria: the target is whatever the
	// criteria match when the server runs them, not known here.
	if len(ps) > 0 {
		return Mapped{}, refuse(ReasonConditional, "conditional "+strings.ToLower(method))
	}
	return Mapped{}, refuse(ReasonMethod, method+" on a type without an id")
}

func unknownFirst(seg string) error {
	if _, ok := operationName(seg); ok || strings.HasPrefix(seg, "_") || strings.HasPrefix(seg, "$") {
		return refuse(ReasonUnknownInteraction, "the segment after a type")
	}
	return ErrUnknownType
}

// search maps a search of typ ("" for all types) bound to patient by the
// path (fromPath) or unbound.
func search(typ, patient string, ps []param, fromPath bool) (Mapped, error) {
	included, err := checkIncludes(ps)
	if err != nil {
		return Mapped{}, err
	}
	if err := checkTypes(ps, typ == "" && patient == ""); err != nil {
		return Mapped{}, err
	}
	named, err := patientParams(typ, ps)
	if err != nil {
		return Mapped{}, err
	}
	switch {
	case patient == "":
		patient = named
	case named != "" && named != patient:
		return Mapped{}, refuse(ReasonPatientConflict, "a patient parameter names another patient than the compartment")
	}
	// Only the compartment in the path bounds the answer: a server may
	// ignore a search parameter it does not support (lenient handling,
	// the default), so patient= alone does not.
	perEntry := !fromPath || typ == "" || included || linkedPatients[typ]
	return Mapped{Action: fhir.Search, Type: typ, Patient: patient, PerEntryCheck: perEntry}, nil
}

// operation maps $name at the system (typ ""), type or instance level.
// $export is the Bulk Data export at the system, Patient and Group/id
// levels; every other operation answers with what it chooses, so it is
// checked per entry.
func operation(method, typ, id, seg string, ps []param, body []byte) (Mapped, error) {
	name, ok := operationName(seg)
	if !ok {
		return Mapped{}, refuse(ReasonUnknownInteraction, "an operation name that is not $[A-Za-z][A-Za-z0-9_-]*")
	}
	if method != "GET" && method != "HEAD" && method != "POST" {
		return Mapped{}, refuse(ReasonMethod, method+" on an operation")
	}
	patient := ""
	if typ == "Patient" && id != "" {
		patient = "Patient/" + id
	}
	if name != "export" {
		if _, err := checkIncludes(ps); err != nil {
			return Mapped{}, err
		}
		return Mapped{Action: fhir.Operation, Type: typ, ID: id, Operation: name, Patient: patient, PerEntryCheck: true}, nil
	}
	switch {
	case typ == "" || typ == "Patient" && id == "" || typ == "Group" && id != "":
	default:
		return Mapped{}, refuse(ReasonUnknownInteraction, "$export is defined at the system, Patient and Group/id levels")
	}
	if method == "POST" && len(body) > 0 {
		return Mapped{}, refuse(ReasonParameter, "$export parameters in a body are not mapped")
	}
	if err := onlyParams(ps, exportParams, "$export"); err != nil {
		return Mapped{}, err
	}
	if err := checkTypes(ps, true); err != nil {
		return Mapped{}, err
	}
	return Mapped{Action: fhir.Export, Type: typ, ID: id, Operation: name, PerEntryCheck: true}, nil
}
