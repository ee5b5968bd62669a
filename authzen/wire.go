package authzen

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The AuthZEN request, as far as the schema goes. Members it does not name
// are ignored (json's default); properties and context are kept raw and
// read key by key by the mapping, which refuses keys it does not know.

type subjectJSON struct {
	Type       *string        `json:"type"`
	ID         *string        `json:"id"`
	Properties jsontext.Value `json:"properties"`
}

type actionJSON struct {
	Name       *string        `json:"name"`
	Properties jsontext.Value `json:"properties"`
}

type resourceJSON struct {
	Type       *string        `json:"type"`
	ID         *string        `json:"id"`
	Properties jsontext.Value `json:"properties"`
}

// evaluationJSON is one access evaluation request, or one item of
// evaluations.
type evaluationJSON struct {
	Subject  *subjectJSON   `json:"subject"`
	Action   *actionJSON    `json:"action"`
	Resource *resourceJSON  `json:"resource"`
	Context  jsontext.Value `json:"context"`
}

// evaluationsJSON is an access evaluations request: defaults, items and
// options.
type evaluationsJSON struct {
	evaluationJSON `json:",inline"`
	Evaluations    []evaluationJSON `json:"evaluations"`
	Options        jsontext.Value   `json:"options"`
}

type optionsJSON struct {
	Semantic *string `json:"evaluations_semantic"`
}

// Evaluation semantics of an evaluations request.
const (
	ExecuteAll          = "execute_all"
	DenyOnFirstDeny     = "deny_on_first_deny"
	PermitOnFirstPermit = "permit_on_first_permit"
)

// badRequest is a request the AuthZEN schema forbids: answered 400 with
// its message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// decode reads data into v, refusing bad JSON (including duplicate member
// names and invalid UTF-8) and mistyped members.
func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var se *json.SemanticError
		if errors.As(err, &se) && se.JSONPointer != "" {
			return badf("%s: wrong type", pointerPath(string(se.JSONPointer)))
		}
		return badf("invalid JSON: %v", err)
	}
	return nil
}

// pointerPath turns a JSON pointer ("/evaluations/0/subject/id") into the
// dotted path messages use ("evaluations[0].subject.id").
func pointerPath(p string) string {
	out := make([]byte, 0, len(p))
	for i := 1; i <= len(p); {
		j := i
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i:j]
		if _, err := strconv.Atoi(seg); err == nil && len(out) > 0 {
			out = append(out, '[')
			out = append(out, seg...)
			out = append(out, ']')
		} else {
			if len(out) > 0 {
				out = append(out, '.')
			}
			out = append(out, seg...)
		}
		i = j + 1
	}
	return string(out)
}

// present is a raw member that was given and is not null.
func present(v jsontext.Value) bool { return len(v) > 0 && v.Kind() != 'n' }

// complete checks what the schema requires of one evaluation (after
// defaults were applied); at prefixes the path in messages.
func (e *evaluationJSON) complete(at string) error {
	switch {
	case e.Subject == nil:
		return badf("%ssubject: required", at)
	case e.Subject.Type == nil:
		return badf("%ssubject.type: required", at)
	case e.Subject.ID == nil:
		return badf("%ssubject.id: required", at)
	case e.Action == nil:
		return badf("%saction: required", at)
	case e.Action.Name == nil:
		return badf("%saction.name: required", at)
	case e.Resource == nil:
		return badf("%sresource: required", at)
	case e.Resource.Type == nil:
		return badf("%sresource.type: required", at)
	case e.Resource.ID == nil:
		return badf("%sresource.id: required", at)
	}
	for _, p := range []struct {
		name string
		v    jsontext.Value
	}{
		{"subject.properties", e.Subject.Properties},
		{"action.properties", e.Action.Properties},
		{"resource.properties", e.Resource.Properties},
		{"context", e.Context},
	} {
		if present(p.v) && p.v.Kind() != '{' {
			return badf("%s%s: must be an object", at, p.name)
		}
	}
	return nil
}

// withDefaults is item with each entity it lacks taken whole from def.
func (item evaluationJSON) withDefaults(def *evaluationJSON) evaluationJSON {
	if item.Subject == nil {
		item.Subject = def.Subject
	}
	if item.Action == nil {
		item.Action = def.Action
	}
	if item.Resource == nil {
		item.Resource = def.Resource
	}
	if !present(item.Context) {
		item.Context = def.Context
	}
	return item
}

// semantic reads options.evaluations_semantic.
func (r *evaluationsJSON) semantic() (string, error) {
	if !present(r.Options) {
		return ExecuteAll, nil
	}
	if r.Options.Kind() != '{' {
		return "", badf("options: must be an object")
	}
	var o optionsJSON
	if err := json.Unmarshal(r.Options, &o); err != nil {
		return "", badf("options.evaluations_semantic: must be a string")
	}
	if o.Semantic == nil {
		return ExecuteAll, nil
	}
	switch *o.Semantic {
	case ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit:
		return *o.Semantic, nil
	}
	return "", badf("options.evaluations_semantic: %q is not one of execute_all, deny_on_first_deny, permit_on_first_permit", *o.Semantic)
}
