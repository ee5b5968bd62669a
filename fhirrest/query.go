package fhirrest

import (
	"net/url"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
)

// maxParams bounds the parameters of one request.
const maxParams = 256

// param is one search or operation parameter: name[:modifier]=value,
// decoded once.
type param struct{ name, modifier, value string }

// parseParams decodes a query string or an application/x-www-form-urlencoded
// body and refuses, for every interaction, the parameters that reach data
// the request does not name: _has (reverse chaining), chained names, _filter
// and _query (whose semantics a mapper cannot see), _method (a method
// override some frameworks honour), and a name that is not
// name[:modifier] of [A-Za-z0-9_-].
func parseParams(raw string) ([]param, error) {
	if strings.Contains(raw, "%25") {
		return nil, ErrDoubleEncoding
	}
	// Some servers also split parameters at ";": a raw one could hide a
	// parameter (code=x;_has:...) inside a value seen here.
	if strings.ContainsAny(raw, ";#") {
		return nil, refuse(ReasonBadQuery, "a raw ; or # in the query")
	}
	var out []param
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			continue
		}
		if len(out) == maxParams {
			return nil, refuse(ReasonBadQuery, "too many parameters")
		}
		k, v, _ := strings.Cut(piece, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, refuse(ReasonBadQuery, "malformed encoding in a parameter name")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, refuse(ReasonBadQuery, "malformed encoding in the value of "+safeName(key))
		}
		p, err := parseName(key)
		if err != nil {
			return nil, err
		}
		p.value = val
		out = append(out, p)
	}
	return out, nil
}

func parseName(key string) (param, error) {
	switch {
	case key == "":
		return param{}, refuse(ReasonBadQuery, "empty parameter name")
	case strings.HasPrefix(strings.ToLower(key), "_has"):
		return param{}, ErrReverseChain
	case strings.Contains(key, "."):
		return param{}, refuse(ReasonChained, safeName(key))
	}
	name, mod, hasMod := strings.Cut(key, ":")
	if !token(name) || hasMod && !token(mod) {
		return param{}, refuse(ReasonBadQuery, "a parameter name is not name[:modifier]")
	}
	// Compared without case: a server that folds names must not see one
	// of these where the mapper saw an unknown name.
	switch strings.ToLower(name) {
	case "_filter", "_query", "_method":
		return param{}, refuse(ReasonParameter, name)
	}
	return param{name: name, modifier: mod}, nil
}

// token reports whether s is 1 to 64 of [A-Za-z0-9_-].
func token(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLetter(c) || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// safeName returns key when it is a plain name (safe to put in an error),
// else a placeholder: an error never echoes arbitrary request text.
func safeName(key string) string {
	n, m, _ := strings.Cut(key, ":")
	n, _, _ = strings.Cut(n, ".")
	m, _, _ = strings.Cut(m, ".")
	if token(n) && (m == "" || token(m)) {
		if m != "" {
			return n + ":" + m
		}
		return n
	}
	return "a parameter"
}

// plainParams are the parameters that change only the form of an answer,
// never which resources it holds: any interaction may carry them.
var plainParams = map[string]bool{"_format": true, "_pretty": true, "_summary": true, "_elements": true}

// historyParams are what a history interaction may add.
var historyParams = map[string]bool{"_count": true, "_since": true, "_at": true, "_list": true, "_sort": true}

// exportParams are the Bulk Data kick-off parameters mapped for $export.
// _typeFilter is not among them: it carries whole search queries (which may
// chain) in a second layer of encoding.
var exportParams = map[string]bool{
	"_outputFormat": true, "_since": true, "_until": true, "_type": true,
	"includeAssociatedData": true, "organizeOutputBy": true, "allowPartialManifests": true,
}

// onlyParams refuses any parameter outside the plain ones and extra.
func onlyParams(ps []param, extra map[string]bool, what string) error {
	for _, p := range ps {
		if p.modifier != "" || !plainParams[p.name] && !extra[p.name] {
			return refuse(ReasonParameter, safeName(p.name+":"+p.modifier)+" on "+what)
		}
	}
	return nil
}

// checkIncludes refuses an _include or _revinclude that could reach
// beyond the resources it names: a wildcard, :iterate or :recurse, or a
// value that is not Type:param[:TargetType] of known types. It reports
// whether the request includes anything (then the answer holds resources
// outside the searched set).
func checkIncludes(ps []param) (bool, error) {
	included := false
	for _, p := range ps {
		if !strings.EqualFold(p.name, "_include") && !strings.EqualFold(p.name, "_revinclude") {
			continue
		}
		included = true
		if p.modifier != "" {
			return false, refuse(ReasonInclude, p.name+":"+p.modifier)
		}
		parts := strings.Split(p.value, ":")
		if strings.Contains(p.value, "*") || len(parts) < 2 || len(parts) > 3 ||
			!fhir.IsResourceType(parts[0]) || !token(parts[1]) || len(parts) == 3 && !fhir.IsResourceType(parts[2]) {
			return false, refuse(ReasonInclude, p.name+" is not Type:parameter[:TargetType]")
		}
	}
	return included, nil
}

// checkTypes refuses a _type parameter unless allowed, and any of its
// values that is not a known resource type.
func checkTypes(ps []param, allowed bool) error {
	for _, p := range ps {
		if !strings.EqualFold(p.name, "_type") {
			continue
		}
		if !allowed || p.modifier != "" {
			return refuse(ReasonParameter, "_type")
		}
		for t := range strings.SplitSeq(p.value, ",") {
			if !fhir.IsResourceType(t) {
				return refuse(ReasonUnknownType, "in _type")
			}
		}
	}
	return nil
}

// patientParams returns the one patient ("Patient/id") the search
// parameters bind the answer to, "" when they bind none.
//
// patient=id, patient=Patient/id, patient:Patient=id, subject=Patient/id
// and subject:Patient=id name a patient; subject=Group/id and
// subject:Group=id name none. On Patient, _id=id names the patient. Refused:
// a patient= that is not a Patient reference, any modifier on patient or
// subject other than a resource type (:missing, :not, :identifier invert or
// loosen the match), an absolute or versioned reference, a list of values
// naming a patient, and two different patients.
func patientParams(typ string, ps []param) (string, error) {
	found := ""
	add := func(ref string) error {
		if found != "" && found != ref {
			return ErrMultiplePatients
		}
		found = ref
		return nil
	}
	for _, p := range ps {
		if p.name == "_id" && typ == "Patient" {
			if p.modifier != "" || strings.Contains(p.value, ",") {
				return "", refuse(ReasonPatientParameter, "_id on Patient takes one id, no modifier")
			}
			if err := checkID(p.value, "_id"); err != nil {
				return "", err
			}
			if err := add("Patient/" + p.value); err != nil {
				return "", err
			}
			continue
		}
		if p.name != "patient" && p.name != "subject" {
			continue
		}
		if p.modifier != "" && !fhir.IsResourceType(p.modifier) {
			return "", refuse(ReasonPatientParameter, p.name+" with a modifier that is not a resource type")
		}
		if p.name == "patient" && p.modifier != "" && p.modifier != "Patient" {
			return "", refuse(ReasonPatientParameter, "patient with a type other than Patient")
		}
		values := strings.Split(p.value, ",")
		for _, v := range values {
			ref, err := reference(p.name, p.modifier, v)
			if err != nil {
				return "", err
			}
			if !strings.HasPrefix(ref, "Patient/") {
				continue
			}
			if len(values) > 1 {
				return "", refuse(ReasonMultiplePatients, p.name+" lists several values")
			}
			if err := add(ref); err != nil {
				return "", err
			}
		}
	}
	return found, nil
}

// reference resolves one value of a patient or subject parameter to
// "Type/id", or "" for a bare subject id (whose type is unknown).
func reference(name, modifier, v string) (string, error) {
	typ, id, typed := strings.Cut(v, "/")
	if !typed {
		id = v
		switch {
		case modifier != "":
			typ = modifier
		case name == "patient":
			typ = "Patient"
		}
	}
	switch {
	case strings.Contains(id, "/"):
		return "", refuse(ReasonPatientParameter, name+" is not a literal reference Type/id")
	case typed && !fhir.IsResourceType(typ):
		return "", refuse(ReasonPatientParameter, name+" is not a literal reference Type/id")
	case typed && modifier != "" && typ != modifier:
		return "", refuse(ReasonPatientParameter, name+" names another type than its modifier")
	case name == "patient" && typ != "Patient":
		return "", refuse(ReasonPatientParameter, "patient is not a Patient reference")
	}
	if err := checkID(id, "the id in "+name); err != nil {
		return "", err
	}
	if typ == "" {
		return "", nil
	}
	return typ + "/" + id, nil
}
