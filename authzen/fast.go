package authzen

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

// Fast paths of the door's JSON, for the shapes requests and answers take
// in practice: each either gives exactly what the general path (json)
// gives or reports false, and the caller then takes the general path.
// Differential tests and fuzz targets hold them to it.

// plain is a string json reads and writes as its bytes between quotes:
// printable ASCII without '"' or '\\'.
func plain[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// plainString is the string of the valid JSON value v when v is a plain
// string literal.
func plainString(v jsontext.Value) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || !plain(v[1:len(v)-1]) {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

// plainStrings is the valid JSON value v when it is a non-empty array of
// plain string literals.
func plainStrings(v jsontext.Value) ([]string, bool) {
	if len(v) < 2 || v[0] != '[' {
		return nil, false
	}
	var out []string
	i := 1
	for {
		i = skipSpace(v, i)
		if i >= len(v) || v[i] != '"' {
			return nil, false
		}
		j := i + 1
		for j < len(v) && v[j] != '"' {
			j++
		}
		if j >= len(v) {
			return nil, false
		}
		s, ok := plainString(v[i : j+1])
		if !ok {
			return nil, false
		}
		out = append(out, s)
		i = skipSpace(v, j+1)
		if i >= len(v) {
			return nil, false
		}
		switch v[i] {
		case ',':
			i++
		case ']':
			if skipSpace(v, i+1) != len(v) {
				return nil, false
			}
			return out, true
		default:
			return nil, false
		}
	}
}

func skipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// appendDecision appends d as json.Marshal writes it, or reports false.
func appendDecision(b []byte, d *decisionJSON) ([]byte, bool) {
	b = append(b, `{"decision":`...)
	if d.Decision {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	if c := d.Context; c != nil {
		b = append(b, `,"context":{`...)
		var ok bool
		if c.DecisionID != "" {
			if b, ok = appendMember(b, `"decision_id":`, c.DecisionID); !ok {
				return b, false
			}
			b = append(b, ',')
		}
		if c.BundleRevision != "" {
			if b, ok = appendMember(b, `"bundle_revision":`, c.BundleRevision); !ok {
				return b, false
			}
			b = append(b, ',')
		}
		b = append(b, `"reasons":`...)
		if b, ok = appendStrings(b, c.Reasons); !ok {
			return b, false
		}
		b = append(b, `,"obligations":[`...)
		for i := range c.Obligations {
			o := &c.Obligations[i]
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendMember(b, `{"id":`, o.ID); !ok {
				return b, false
			}
			if b, ok = appendMember(b, `,"type":`, o.Type); !ok {
				return b, false
			}
			b = append(b, `,"properties":{`...)
			p := &o.Properties
			comma := false
			if len(p.Paths) > 0 {
				b = append(b, `"paths":`...)
				if b, ok = appendStrings(b, p.Paths); !ok {
					return b, false
				}
				comma = true
			}
			if len(p.Labels) > 0 {
				if comma {
					b = append(b, ',')
				}
				b = append(b, `"labels":[`...)
				for j, l := range p.Labels {
					if j > 0 {
						b = append(b, ',')
					}
					if b, ok = appendMember(b, `{"system":`, l.System); !ok {
						return b, false
					}
					if b, ok = appendMember(b, `,"code":`, l.Code); !ok {
						return b, false
					}
					b = append(b, '}')
				}
				b = append(b, ']')
				comma = true
			}
			if len(p.Tags) > 0 {
				if comma {
					b = append(b, ',')
				}
				b = append(b, `"tags":`...)
				if b, ok = appendStrings(b, p.Tags); !ok {
					return b, false
				}
			}
			b = append(b, "}}"...)
		}
		b = append(b, ']')
		switch len(c.ReasonAdmin) {
		case 0:
		case 1:
			for k, v := range c.ReasonAdmin {
				if !plain(k) {
					return b, false
				}
				b = append(b, `,"reason_admin":{"`...)
				b = append(b, k...)
				if b, ok = appendMember(b, `":`, v); !ok {
					return b, false
				}
				b = append(b, '}')
			}
		default:
			return b, false // the order of members is json's
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

func appendMember(b []byte, name, s string) ([]byte, bool) {
	if !plain(s) {
		return b, false
	}
	b = append(b, name...)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

func appendStrings(b []byte, ss []string) ([]byte, bool) {
	b = append(b, '[')
	for i, s := range ss {
		if !plain(s) {
			return b, false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
	}
	return append(b, ']'), true
}

// member is one member of an object: spans of its name and value.
type member struct{ name, value []byte }

// plainMembers splits obj, a JSON object the request's decoding has
// already checked (valid, no duplicate names), into its members, when
// there are at most len(buf) of them and no name has an escape; else
// false.
func plainMembers(obj jsontext.Value, buf []member) ([]member, bool) {
	out := buf[:0]
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return out, skipSpace(obj, i+1) == len(obj)
	}
	for {
		if len(out) == len(buf) || i >= len(obj) || obj[i] != '"' {
			return nil, false
		}
		j := i + 1
		for j < len(obj) && obj[j] != '"' {
			if obj[j] == '\\' {
				return nil, false
			}
			j++
		}
		if j >= len(obj) {
			return nil, false
		}
		name := obj[i+1 : j]
		i = skipSpace(obj, j+1)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false
		}
		i = skipSpace(obj, i+1)
		end, ok := skipValue(obj, i)
		if !ok {
			return nil, false
		}
		out = append(out, member{name, obj[i:end]})
		i = skipSpace(obj, end)
		if i >= len(obj) {
			return nil, false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return out, skipSpace(obj, i+1) == len(obj)
		default:
			return nil, false
		}
	}
}

// skipValue is the end of the valid JSON value starting at v[i].
func skipValue(v []byte, i int) (int, bool) {
	depth := 0
	for i < len(v) {
		switch c := v[i]; c {
		case '"':
			i++
			for i < len(v) && v[i] != '"' {
				if v[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(v) {
				return 0, false
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return 0, false
			}
			depth--
			i++
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return 0, false
			}
			i++
		default: // a literal or a number
			for i < len(v) && !bytesEnd(v[i]) {
				i++
			}
		}
		if depth == 0 {
			return i, true
		}
	}
	return 0, false
}

func bytesEnd(c byte) bool {
	return c == ',' || c == '}' || c == ']' || c == ':' || c == '"' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '{' || c == '['
}

// plainEvaluation reads body into e as json.Unmarshal (decode) does, when
// body is valid JSON of the plain shape: an object whose members and
// those of subject, action and resource have names without escapes,
// with plain strings or null for type, id and name. Else false, and e
// is left as it was.
func plainEvaluation(body []byte, e *evaluationJSON) bool {
	if !jsontext.Value(body).IsValid() {
		return false
	}
	var buf [16]member
	ms, ok := plainMembers(body, buf[:])
	if !ok {
		return false
	}
	var out evaluationJSON
	for _, m := range ms {
		switch string(m.name) {
		case "subject", "action", "resource":
			if string(m.value) == "null" {
				switch string(m.name) {
				case "subject":
					out.Subject = nil
				case "action":
					out.Action = nil
				default:
					out.Resource = nil
				}
				continue
			}
			var x plainEntity
			if !x.read(m.value) {
				return false
			}
			switch string(m.name) {
			case "subject":
				out.Subject = &subjectJSON{Type: x.typ, ID: x.id, Properties: x.properties}
			case "action":
				out.Action = &actionJSON{Name: x.name, Properties: x.properties}
			default:
				out.Resource = &resourceJSON{Type: x.typ, ID: x.id, Properties: x.properties}
			}
		case "context":
			out.Context = bytes.Clone(m.value)
		}
	}
	*e = out
	return true
}

// plainEntity is the members of a subject, action or resource the door
// reads (each reads those it has).
type plainEntity struct {
	typ, id, name *string
	properties    jsontext.Value
}

// read reads the object v.
func (x *plainEntity) read(v []byte) bool {
	var buf [8]member
	ms, ok := plainMembers(v, buf[:])
	if !ok {
		return false
	}
	for _, m := range ms {
		var p **string
		switch string(m.name) {
		case "type":
			p = &x.typ
		case "id":
			p = &x.id
		case "name":
			p = &x.name
		case "properties":
			x.properties = bytes.Clone(m.value)
			continue
		default:
			continue
		}
		if string(m.value) == "null" {
			*p = nil
			continue
		}
		s, ok := plainString(m.value)
		if !ok {
			return false
		}
		*p = &s
	}
	return true
}
