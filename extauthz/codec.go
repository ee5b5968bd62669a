package extauthz

import (
	"errors"
	"fmt"
	"unicode/utf8"
	"unsafe"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// wireCodec is the door's protobuf codec: proto.Unmarshal and proto.Marshal,
// except that the map of the request's headers
// (attributes.request.http.headers, which Envoy fills) is read without
// protobuf reflection. Building a Go map through reflection was 8% of the
// server's CPU per served ext_authz Check (the whole unmarshal 10%). The
// result is what proto.Unmarshal gives, field for field, unknown fields
// and errors included (a differential test on generated and mutated
// messages holds it to that): the fields on the way to the map are split
// from the rest of their message, which proto.Unmarshal merges as usual.
type wireCodec struct{}

var _ connect.Codec = wireCodec{}

func (wireCodec) Name() string   { return "proto" }
func (wireCodec) IsBinary() bool { return true }

func (wireCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.Marshal(pm)
}

// MarshalAppend lets connect-go reuse its buffers, as with its own codec.
func (wireCodec) MarshalAppend(b []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, pm)
}

func (wireCodec) Unmarshal(b []byte, m any) error {
	switch m := m.(type) {
	case *authv3.CheckRequest:
		return UnmarshalCheckRequest(b, m)
	case proto.Message:
		return proto.Unmarshal(b, m)
	}
	return fmt.Errorf("%T is not a proto.Message", m)
}

// Field numbers on the way to the headers map.
const (
	fieldAttributes  protowire.Number = 1 // CheckRequest.attributes
	fieldRequest     protowire.Number = 4 // AttributeContext.request
	fieldHTTP        protowire.Number = 2 // AttributeContext.Request.http
	fieldHeaders     protowire.Number = 3 // AttributeContext.HttpRequest.headers
	fieldMapKey      protowire.Number = 1
	fieldMapValue    protowire.Number = 2
	maxValidFieldNum                  = protowire.MaxValidNumber
)

var (
	errWire = errors.New("cannot parse invalid wire-format data")
	errUTF8 = errors.New("string field contains invalid UTF-8")
)

var mergeOpts = proto.UnmarshalOptions{Merge: true}

// UnmarshalCheckRequest is proto.Unmarshal(b, m) for an ext_authz
// CheckRequest, with the headers map read by hand.
func UnmarshalCheckRequest(b []byte, m *authv3.CheckRequest) error {
	m.Reset()
	return splitMerge(b, m, fieldAttributes, func(part []byte) error {
		if m.Attributes == nil {
			m.Attributes = &authv3.AttributeContext{}
		}
		a := m.Attributes
		return splitMerge(part, a, fieldRequest, func(part []byte) error {
			if a.Request == nil {
				a.Request = &authv3.AttributeContext_Request{}
			}
			r := a.Request
			return splitMerge(part, r, fieldHTTP, func(part []byte) error {
				if r.Http == nil {
					r.Http = &authv3.AttributeContext_HttpRequest{}
				}
				return mergeHTTP(part, r.Http)
			})
		})
	})
}

// mergeHTTP merges b, an encoding of an HttpRequest, into h, with the
// headers map read by hand. Every header name and value is a substring
// of one string copied from b: one allocation for all of them.
func mergeHTTP(b []byte, h *authv3.AttributeContext_HttpRequest) error {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	view := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
	return splitMerge(view, h, fieldHeaders, func(entry []byte) error {
		if h.Headers == nil {
			h.Headers = make(map[string]string, countFields(view, fieldHeaders))
		}
		k, v, err := mapEntry(s, view, entry)
		if err != nil {
			return err
		}
		h.Headers[k] = v
		return nil
	})
}

// countFields counts the length-delimited fields num of a well-formed
// encoding b.
func countFields(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		f, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return n
		}
		l := protowire.ConsumeFieldValue(f, typ, b[tagLen:])
		if l < 0 {
			return n
		}
		if f == num && typ == protowire.BytesType {
			n++
		}
		b = b[tagLen+l:]
	}
	return n
}

// splitMerge merges b, an encoding of m, into m: every occurrence of
// field num with the length-delimited wire type goes to part (in order),
// the rest of b to proto's merge. The field is a message or map field of
// m outside any oneof, so the order between the two does not matter. A
// field num with another wire type is an unknown field for proto, as it
// is in proto.Unmarshal.
func splitMerge(b []byte, m proto.Message, num protowire.Number, part func([]byte) error) error {
	var rest []byte
	var partsArr [16][]byte // on the stack: one per header up to 16
	parts := partsArr[:0]
	for len(b) > 0 {
		n, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 || n > maxValidFieldNum {
			return errWire
		}
		valLen := protowire.ConsumeFieldValue(n, typ, b[tagLen:])
		if valLen < 0 {
			return errWire
		}
		field := b[:tagLen+valLen]
		if n == num && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(field[tagLen:])
			parts = append(parts, v)
		} else {
			if rest == nil && len(parts) == 0 && len(field) == len(b) {
				rest = b // the field is all there is
			} else {
				if rest == nil {
					// What is left of b bounds the rest: one allocation.
					rest = make([]byte, 0, len(b))
				}
				rest = append(rest, field...)
			}
		}
		b = b[tagLen+valLen:]
	}
	if len(rest) > 0 {
		if err := mergeOpts.Unmarshal(rest, m); err != nil {
			return err
		}
	}
	for _, p := range parts {
		if err := part(p); err != nil {
			return err
		}
	}
	return nil
}

// mapEntry reads a map<string, string> entry, a sub-slice of view (the
// bytes of s), as proto.Unmarshal does: a missing key or value is "", the
// last occurrence wins, other fields and fields of another wire type are
// skipped, and strings must be UTF-8. Key and value are substrings of s.
func mapEntry(s string, view, b []byte) (key, value string, err error) {
	for len(b) > 0 {
		n, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 || n > maxValidFieldNum {
			return "", "", errWire
		}
		b = b[tagLen:]
		if (n == fieldMapKey || n == fieldMapValue) && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return "", "", errWire
			}
			if !utf8.Valid(v) {
				return "", "", errUTF8
			}
			str := ""
			if len(v) > 0 {
				// v lies in view: the same bytes of s.
				off := int(uintptr(unsafe.Pointer(&v[0])) - uintptr(unsafe.Pointer(&view[0])))
				str = s[off : off+len(v)]
			}
			if n == fieldMapKey {
				key = str
			} else {
				value = str
			}
			b = b[l:]
			continue
		}
		l := protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return "", "", errWire
		}
		b = b[l:]
	}
	return key, value, nil
}
