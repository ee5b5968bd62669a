package authzen

import (
	"bytes"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Reason codes of decisions the door makes itself, before the engine.
const (
	// ReasonUnknownProperty: a key inside properties or context that
	// Chaperone does not know.
	ReasonUnknownProperty = "UNKNOWN_PROPERTY"
	// ReasonPurposeRequired: no context.purposeOfUse.
	ReasonPurposeRequired = "PURPOSE_REQUIRED"
	// ReasonInvalidRequest: a value of the wrong type, or a CheckRequest
	// that breaks the API's rules.
	ReasonInvalidRequest = "INVALID_REQUEST"
	// ReasonObligationUnsupported: the answer needs an obligation type
	// missing from context.supported_obligations.
	ReasonObligationUnsupported = "OBLIGATION_UNSUPPORTED"
)

// refusal is a decision false the door makes without the engine.
type refusal struct {
	code    string
	message string // names the field
}

// mapped is one evaluation as a CheckRequest, and what the door keeps for
// itself.
type mapped struct {
	req *chaperonev1.CheckRequest
	// supported lists context.supported_obligations; nil when absent
	// (every type is then supported).
	supported []string
}

// prefixes are the reference types a bare subject id gets from its kind.
var prefixes = map[string]string{
	"practitioner":   "Practitioner/",
	"patient":        "Patient/",
	"related-person": "RelatedPerson/",
	"device":         "Device/",
}

// toCheck maps a complete evaluation (see complete) to a CheckRequest.
func toCheck(e *evaluationJSON) (mapped, *refusal) {
	req := &chaperonev1.CheckRequest{
		Subject:  &chaperonev1.Subject{Kind: *e.Subject.Type, Id: *e.Subject.ID},
		Action:   *e.Action.Name,
		Resource: &chaperonev1.Resource{Type: *e.Resource.Type, Id: *e.Resource.ID},
	}
	if p, ok := prefixes[req.Subject.Kind]; ok && req.Subject.Id != "" && !strings.Contains(req.Subject.Id, "/") {
		req.Subject.Id = p + req.Subject.Id
	}
	m := mapped{req: req}
	if r := members(e.Subject.Properties, "subject.properties.", func(name string, v jsontext.Value) (bool, *refusal) {
		return subjectProperty(req.Subject, name, v)
	}); r != nil {
		return m, r
	}
	if r := members(e.Action.Properties, "action.properties.", func(string, jsontext.Value) (bool, *refusal) {
		return false, nil
	}); r != nil {
		return m, r
	}
	if r := members(e.Resource.Properties, "resource.properties.", func(name string, v jsontext.Value) (bool, *refusal) {
		return resourceProperty(req.Resource, name, v)
	}); r != nil {
		return m, r
	}
	if r := members(e.Context, "context.", func(name string, v jsontext.Value) (bool, *refusal) {
		return contextMember(&m, name, v)
	}); r != nil {
		return m, r
	}
	if req.PurposeOfUse == "" {
		return m, &refusal{ReasonPurposeRequired, "context.purposeOfUse: required"}
	}
	return m, nil
}

// members calls f for each member of the object obj (absent or null: none)
// in order. f returns known false for a key it does not know: the
// evaluation is refused UNKNOWN_PROPERTY naming it, before any value is
// looked at, so a misspelt key is named as such.
func members(obj jsontext.Value, at string, f func(name string, v jsontext.Value) (known bool, r *refusal)) *refusal {
	if !present(obj) {
		return nil
	}
	var buf [16]member
	if ms, ok := plainMembers(obj, buf[:]); ok {
		var first *refusal
		for _, m := range ms {
			name := string(m.name)
			known, r := f(name, m.value)
			if !known {
				return &refusal{ReasonUnknownProperty, at + name + ": unknown property"}
			}
			if r != nil && first == nil {
				r.message = at + r.message
				first = r
			}
		}
		return first
	}
	return slowMembers(obj, at, f)
}

// slowMembers is members through a jsontext.Decoder, for objects
// plainMembers does not split.
func slowMembers(obj jsontext.Value, at string, f func(name string, v jsontext.Value) (known bool, r *refusal)) *refusal {
	dec := jsontext.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.ReadToken(); err != nil { // '{', checked by complete
		return &refusal{ReasonInvalidRequest, strings.TrimSuffix(at, ".") + ": not an object"}
	}
	var first *refusal
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return &refusal{ReasonInvalidRequest, strings.TrimSuffix(at, ".") + ": not an object"}
		}
		name := tok.String()
		v, err := dec.ReadValue()
		if err != nil {
			return &refusal{ReasonInvalidRequest, at + name + ": not a JSON value"}
		}
		known, r := f(name, v)
		if !known {
			return &refusal{ReasonUnknownProperty, at + name + ": unknown property"}
		}
		if r != nil && first == nil {
			r.message = at + r.message
			first = r
		}
	}
	return first
}

func wrongType(name, want string) *refusal {
	return &refusal{ReasonInvalidRequest, name + ": must be " + want}
}

func subjectProperty(s *chaperonev1.Subject, name string, v jsontext.Value) (bool, *refusal) {
	var r *refusal
	switch name {
	case "roles":
		s.Roles, r = words(name, v)
	case "scopes":
		s.Scopes, r = words(name, v)
	case "organization":
		s.Organization, r = str(name, v)
	case "clientId":
		s.ClientId, r = str(name, v)
	case "launchPatient":
		s.LaunchPatient, r = str(name, v)
	case "identifiers":
		s.Identifiers, r = identifiers(name, v)
	case "organizationIdentifiers":
		s.OrganizationIdentifiers, r = identifiers(name, v)
	default:
		return false, nil
	}
	return true, r
}

func resourceProperty(res *chaperonev1.Resource, name string, v jsontext.Value) (bool, *refusal) {
	var r *refusal
	switch name {
	case "patient":
		res.Patient, r = str(name, v)
	case "organization":
		res.Organization, r = str(name, v)
	case "author":
		res.Author, r = str(name, v)
	case "securityLabels":
		res.SecurityLabels, r = codings(name, v)
	case "codes":
		res.Codes, r = codings(name, v)
	case "categories":
		res.Categories, r = codings(name, v)
	case "profiles":
		if err := json.Unmarshal(v, &res.Profiles); err != nil {
			r = wrongType(name, "an array of strings")
		}
	case "date":
		res.Date, r = timestamp(name, v)
	default:
		return false, nil
	}
	return true, r
}

func contextMember(m *mapped, name string, v jsontext.Value) (bool, *refusal) {
	req := m.req
	ctx := func() *chaperonev1.Context {
		if req.Context == nil {
			req.Context = &chaperonev1.Context{}
		}
		return req.Context
	}
	var r *refusal
	switch name {
	case "purposeOfUse":
		req.PurposeOfUse, r = str(name, v)
	case "breakGlassReason":
		ctx().BreakGlassReason, r = str(name, v)
	case "networkZone":
		ctx().NetworkZone, r = str(name, v)
	case "deviceTrust":
		ctx().DeviceTrust, r = str(name, v)
	case "ip":
		ctx().Ip, r = str(name, v)
	case "correlationId":
		ctx().CorrelationId, r = str(name, v)
	case "phase":
		ctx().Phase, r = str(name, v)
	case "time":
		ctx().Time, r = timestamp(name, v)
	case "supported_obligations":
		if s, ok := plainStrings(v); ok {
			m.supported = s
			break
		}
		m.supported = []string{}
		if err := json.Unmarshal(v, &m.supported); err != nil {
			r = wrongType(name, "an array of obligation types")
		}
	default:
		return false, nil
	}
	return true, r
}

// str reads a string; null is "".
func str(name string, v jsontext.Value) (string, *refusal) {
	if s, ok := plainString(v); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", wrongType(name, "a string")
	}
	return s, nil
}

// words reads an array of strings, or a string of space-separated words
// (as OAuth writes scopes).
func words(name string, v jsontext.Value) ([]string, *refusal) {
	if v.Kind() == '"' {
		s, r := str(name, v)
		return strings.Fields(s), r
	}
	if out, ok := plainStrings(v); ok {
		return out, nil
	}
	var out []string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, wrongType(name, "an array of strings or a space-separated string")
	}
	return out, nil
}

func timestamp(name string, v jsontext.Value) (*timestamppb.Timestamp, *refusal) {
	if v.Kind() == 'n' {
		return nil, nil
	}
	s, r := str(name, v)
	if r != nil {
		return nil, wrongType(name, "an RFC 3339 time")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, wrongType(name, "an RFC 3339 time")
	}
	return timestamppb.New(t), nil
}

type codingJSON struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// strict refuses members a coding or identifier does not have: inside
// properties, an unknown key is never dropped.
var strict = json.RejectUnknownMembers(true)

func codings(name string, v jsontext.Value) ([]*chaperonev1.Coding, *refusal) {
	var in []codingJSON
	if err := json.Unmarshal(v, &in, strict); err != nil {
		return nil, wrongType(name, `an array of {"system", "code"}`)
	}
	out := make([]*chaperonev1.Coding, len(in))
	for i, c := range in {
		out[i] = &chaperonev1.Coding{System: c.System, Code: c.Code}
	}
	return out, nil
}

type identifierJSON struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

func identifiers(name string, v jsontext.Value) ([]*chaperonev1.Identifier, *refusal) {
	var in []identifierJSON
	if err := json.Unmarshal(v, &in, strict); err != nil {
		return nil, wrongType(name, `an array of {"system", "value"}`)
	}
	out := make([]*chaperonev1.Identifier, len(in))
	for i, c := range in {
		out[i] = &chaperonev1.Identifier{System: c.System, Value: c.Value}
	}
	return out, nil
}

// fieldPaths are the AuthZEN spelling of CheckRequest fields, for the
// messages of invalid requests.
var fieldPaths = map[string]string{
	"subject.kind":  "subject.type",
	"subject.id":    "subject.id",
	"action":        "action.name",
	"resource.type": "resource.type",
	"resource.id":   "resource.id",
	"purposeOfUse":  "context.purposeOfUse",
}

// authzenPath spells a CheckRequest field path ("subject.roles[0]") as
// the AuthZEN member it came from ("subject.properties.roles[0]").
func authzenPath(field string) string {
	base, rest := field, ""
	if i := strings.IndexByte(field, '['); i >= 0 {
		base, rest = field[:i], field[i:]
	}
	if p, ok := fieldPaths[base]; ok {
		return p + rest
	}
	for _, e := range []string{"subject.", "resource."} {
		if strings.HasPrefix(base, e) {
			head, tail, _ := strings.Cut(base[len(e):], ".")
			if tail != "" {
				tail = "." + tail
			}
			return e + "properties." + head + tail + rest
		}
	}
	return field
}
