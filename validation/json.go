package validation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// UnmarshalJSON reads msg from its proto3 JSON form, refusing what the
// message does not have: a field name that is not one of its fields (in
// its JSON or proto spelling, exact case) is an [*Error] whose violation
// names the field's path, e.g. "resource.securityLabel", never dropped. A
// syntax error or a value of the wrong type is an [*Error] too. It is the
// decoder of every door that reads JSON: the API's JSON codec, the CLI's
// request files and the policy test suites. It does not check the rules;
// [Validator.DecodeJSON] does both.
func UnmarshalJSON(data []byte, msg proto.Message) error {
	err := protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(data, msg)
	if err == nil {
		return nil
	}
	// Only a refused message pays for the second look that finds the path.
	if path, ok := unknownField(data, msg.ProtoReflect().Descriptor()); ok {
		return &Error{Violations: []Violation{{Field: path, Message: "unknown field"}}}
	}
	return &Error{Violations: []Violation{{Message: strings.TrimPrefix(err.Error(), "proto: ")}}}
}

// unknownField returns the path of the first object member in data that
// names no field of md (descending into message fields and lists of
// messages), ok false when there is none or data is not a JSON object.
func unknownField(data []byte, md protoreflect.MessageDescriptor) (string, bool) {
	return unknownIn(data, md, "", 0)
}

// maxJSONDepth bounds the search (protojson itself refuses deeper nesting).
const maxJSONDepth = 100

func unknownIn(data []byte, md protoreflect.MessageDescriptor, prefix string, depth int) (string, bool) {
	if depth > maxJSONDepth || wellKnown(md) {
		return "", false
	}
	// Members in document order, so the first unknown one is named.
	for _, m := range members(data) {
		name, raw := m.name, m.raw
		fields := md.Fields()
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if fd == nil {
			if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
				continue // an extension: protojson words it
			}
			return path, true
		}
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind || fd.IsMap() {
			continue
		}
		if fd.IsList() {
			var items []json.RawMessage
			if json.Unmarshal(raw, &items) != nil {
				continue
			}
			for i, item := range items {
				if p, ok := unknownIn(item, fd.Message(), fmt.Sprintf("%s[%d]", path, i), depth+1); ok {
					return p, true
				}
			}
			continue
		}
		if p, ok := unknownIn(raw, fd.Message(), path, depth+1); ok {
			return p, true
		}
	}
	return "", false
}

// wellKnown reports the google.protobuf types whose JSON form is not an
// object of their fields (Timestamp, Struct, Any, wrappers, ...).
func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}

type member struct {
	name string
	raw  json.RawMessage
}

// members lists the members of the top-level object in data in the order
// they appear (as far as data is well-formed).
func members(data []byte) []member {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out
		}
		name, ok := t.(string)
		if !ok {
			return out
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return out
		}
		out = append(out, member{name, raw})
	}
	return out
}
