package extauthz_test

import (
	"math/rand/v2"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/chaperone-pdp/chaperone/extauthz"
)

// fill sets every field of m (found by reflection, so a field Envoy adds
// is filled too) to a random value, messages down to depth.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if r.IntN(4) == 0 {
			continue // absent
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(4) {
				k := scalar(r, fd.MapKey()).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					if depth == 0 {
						continue
					}
					v := mp.NewValue()
					fill(r, v.Message(), depth-1)
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(r, fd.MapValue()))
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(3) {
				if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
					if depth == 0 {
						continue
					}
					v := l.NewElement()
					fill(r, v.Message(), depth-1)
					l.Append(v)
				} else {
					l.Append(scalar(r, fd))
				}
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if depth > 0 {
				fill(r, m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, scalar(r, fd))
		}
	}
}

var words = []string{"", "authorization", "x-purpose-of-use", ":path", "Bearer eyJ", "GET", "é", "/fhir/Observation?patient=Patient/1"}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.EnumKind:
		vs := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vs.Get(r.IntN(vs.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(r.Int32() - 1<<30)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(r.Int64() - 1<<62)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(r.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(r.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.Float64())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(words[r.IntN(len(words))])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(words[r.IntN(len(words))]))
	}
	panic("kind " + fd.Kind().String())
}

// mutate damages or extends an encoding: a flipped or inserted byte, a
// cut, a second message appended (proto merges it), a field of the
// headers map's number with another wire type, an entry with invalid
// UTF-8 or with fields of other numbers and wire types.
func mutate(r *rand.Rand, b, other []byte) []byte {
	b = append([]byte(nil), b...)
	switch r.IntN(6) {
	case 0:
		if len(b) > 0 {
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		}
	case 1:
		if len(b) > 0 {
			b = b[:r.IntN(len(b))]
		}
	case 2:
		i := r.IntN(len(b) + 1)
		b = append(b[:i], append([]byte{byte(r.IntN(256))}, b[i:]...)...)
	case 3:
		b = append(b, other...)
	case 4: // attributes{request{http{headers: <varint>}}}
		inner := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7)
		b = append(b, nest(inner)...)
	case 5:
		entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k")
		if r.IntN(2) == 0 {
			entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), []byte{0xff, 'x'})
		} else {
			entry = protowire.AppendVarint(protowire.AppendTag(entry, 9, protowire.VarintType), 1)
			entry = protowire.AppendVarint(protowire.AppendTag(entry, 2, protowire.VarintType), 1)
		}
		b = append(b, nest(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), entry))...)
	}
	return b
}

// nest wraps HttpRequest fields into a CheckRequest encoding.
func nest(http []byte) []byte {
	wrap := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	return wrap(1, wrap(4, wrap(2, http)))
}

// TestUnmarshalCheckRequest: the door's decoder gives what proto.Unmarshal
// gives (the same message, unknown fields included, or an error for both)
// for generated CheckRequests with every field set by reflection and for
// mutations of them.
func TestUnmarshalCheckRequest(t *testing.T) {
	t.Parallel()
	// The fields split on the way to the map are no oneof members (the
	// order between them and the rest would then matter).
	md := (&authv3.CheckRequest{}).ProtoReflect().Descriptor()
	for _, num := range []protoreflect.FieldNumber{1, 4, 2} {
		fd := md.Fields().ByNumber(num)
		if fd == nil || fd.ContainingOneof() != nil || fd.Message() == nil || fd.IsList() {
			t.Fatalf("%s field %d: %v", md.FullName(), num, fd)
		}
		md = fd.Message()
	}
	if fd := md.Fields().ByNumber(3); fd.Name() != "headers" || !fd.IsMap() || fd.ContainingOneof() != nil ||
		fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind {
		t.Fatalf("HttpRequest field 3 is %v", fd)
	}

	r := rand.New(rand.NewPCG(1, 2))
	var prev []byte
	same, errs := 0, 0
	for i := range 4000 {
		m := &authv3.CheckRequest{}
		fill(r, m.ProtoReflect(), 2+r.IntN(4))
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			b = mutate(r, b, prev)
		}
		prev = b
		want := &authv3.CheckRequest{}
		werr := proto.Unmarshal(b, want)
		got := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}} // reset by the decoder
		gerr := extauthz.UnmarshalCheckRequest(b, got)
		switch {
		case (werr == nil) != (gerr == nil):
			t.Fatalf("input %d: proto.Unmarshal error %v, door's %v\n% x", i, werr, gerr, b)
		case werr != nil:
			errs++
		case !proto.Equal(got, want):
			t.Fatalf("input %d: door's decoder gives\n%v\nproto.Unmarshal\n%v", i, got, want)
		default:
			same++
		}
	}
	if same < 2000 || errs < 200 {
		t.Errorf("%d inputs decoded alike, %d refused by both: want both kinds often", same, errs)
	}
	t.Logf("%d inputs decoded alike, %d refused by both", same, errs)
}

func BenchmarkUnmarshalCheckRequest(b *testing.B) {
	m := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/fhir/Patient/52/Observation", Host: "fhir.example.org", Scheme: "https", Protocol: "HTTP/1.1",
		Headers: map[string]string{":authority": "fhir.example.org", ":method": "GET", ":path": "/fhir/Patient/52/Observation", ":scheme": "https",
			"accept": "application/fhir+json", "authorization": "Bearer eyJhbGciOiJFZERTQSJ9.e30.sig", "user-agent": "bench",
			"x-forwarded-proto": "https", "x-request-id": "5f3c1e1a-4b7d-4c36-9d41-0c1f7a0e2b55", "x-purpose-of-use": "TREAT"},
	}}}}
	data, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    func([]byte, *authv3.CheckRequest) error
	}{
		{"decoder=proto", func(b []byte, m *authv3.CheckRequest) error { return proto.Unmarshal(b, m) }},
		{"decoder=door", extauthz.UnmarshalCheckRequest},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := tc.f(data, &authv3.CheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzUnmarshalCheckRequest holds the door's decoder to proto.Unmarshal
// on any input: the same message or an error for both, never a panic.
func FuzzUnmarshalCheckRequest(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 16 {
		m := &authv3.CheckRequest{}
		fill(r, m.ProtoReflect(), 4)
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(nest(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), []byte("\x0a\x01a\x12\x01b"))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		want := &authv3.CheckRequest{}
		werr := proto.Unmarshal(b, want)
		got := &authv3.CheckRequest{}
		gerr := extauthz.UnmarshalCheckRequest(b, got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto.Unmarshal error %v, door's %v", werr, gerr)
		}
		if werr == nil && !proto.Equal(got, want) {
			t.Fatalf("door's decoder gives\n%v\nproto.Unmarshal\n%v", got, want)
		}
	})
}
