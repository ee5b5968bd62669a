package validation

import (
	"math/rand/v2"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// strings near every limit and rule the API's .proto files use.
var pool = func() []string {
	p := []string{"", "a", "read", "search", "READ", "TREAT", "treat", "T_1", "ETREAT", "Observation", "observation", "O",
		"practitioner", "related-person", "Practitioner/p1", "10.1.2.3", "::1", "fe80::1%eth0", "01.2.3.4", "1.2.3",
		"::ffff:1.2.3.4", "2001:db8::1", "1.2.3.4 ", "256.1.1.1", "[::1]", "FE80::A", "é", "日本", "🙂", "x\x00y",
		"Patient/52", "patient/*.read", "http://terminology.hl7.org/CodeSystem/v3-ActCode",
		"SUD", "sud", " SUD", "SUD ", "S UD", "S\u00a0UD", "S\u200bUD", "R\x00", "obs1", "obs_1", "obs1 ",
		"unconscious patient, checking allergies", "twenty characters!!!", "nineteen characters", " a b c d e f g h i j k l m n o p q r s t ",
		"a b c d e f g h i j k l m n o p q r s", "\t\n" + strings.Repeat("x", 20), strings.Repeat("x", 19) + "\x01" + "y"}
	// Valid references and respellings of them: the grammar's edges.
	for _, ref := range []string{"Patient/53", "Organization/o1", "Practitioner/p1", "RelatedPerson/rp-1.a", "Patient/" + strings.Repeat("9", 64)} {
		p = append(p, ref, strings.ToLower(ref), strings.ToUpper(ref), " "+ref, ref+" ", ref+"?", ref+"#", ref+"\x00", ref+"/",
			ref+"\n", ref[strings.IndexByte(ref, '/')+1:], "http://fhir.example/"+ref, ref+"/_history/1",
			strings.Replace(ref, "a", "\u0430", 1), strings.Replace(ref, "/", "//", 1), strings.Replace(ref, "/", "", 1))
	}
	p = append(p, "Patient/"+strings.Repeat("9", 65), "P/1", "Pa/", "/52", "Patient/5 3", "Patient/5_3", "Patient/5%33")
	for _, n := range []int{31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025} {
		p = append(p, strings.Repeat("a", n), strings.Repeat("é", n), "A"+strings.Repeat("b", n-1))
	}
	return p
}()

var listLens = []int{0, 0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 128, 129}

// fill sets m's fields at random from the pools.
func fill(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rng.IntN(5) == 0 || fd.IsMap() || fd.ContainingOneof() != nil && rng.IntN(2) == 0 {
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			n := listLens[rng.IntN(len(listLens))]
			if fd.Kind() == protoreflect.MessageKind && depth > 3 {
				n = min(n, 1)
			}
			for range n {
				if fd.Kind() == protoreflect.MessageKind {
					if depth < 6 {
						e := l.NewElement()
						fill(rng, e.Message(), depth+1)
						l.Append(e)
					}
					continue
				}
				l.Append(scalar(rng, fd))
			}
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			if depth < 6 {
				fill(rng, m.Mutable(fd).Message(), depth+1)
			}
			continue
		}
		m.Set(fd, scalar(rng, fd))
	}
}

func scalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(pool[rng.IntN(len(pool))])
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(rng.IntN(fd.Enum().Values().Len() + 1)))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(rng.IntN(2000) - 1000))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(rng.IntN(200000) - 100000))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(rng.IntN(2000)))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(rng.IntN(200000)))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(pool[rng.IntN(len(pool))]))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(rng.Float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(rng.Float64())
	}
	return fd.Default()
}

// mutate sets one field somewhere in m (descending into set messages) to a
// pool value, or clears it.
func mutate(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	fd := fields.Get(rng.IntN(fields.Len()))
	switch {
	case rng.IntN(8) == 0:
		m.Clear(fd)
	case fd.IsMap():
	case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && depth < 4:
		mutate(rng, m.Mutable(fd).Message(), depth+1)
	case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
		l := m.Mutable(fd).List()
		if l.Len() > 0 && rng.IntN(2) == 0 {
			mutate(rng, l.Get(rng.IntN(l.Len())).Message(), depth+1)
			return
		}
		e := l.NewElement()
		fill(rng, e.Message(), depth+1)
		l.Append(e)
	case fd.IsList():
		l := m.Mutable(fd).List()
		for range listLens[rng.IntN(len(listLens))] {
			l.Append(scalar(rng, fd))
		}
	default:
		m.Set(fd, scalar(rng, fd))
	}
}

// seeds are valid messages the differential test mutates.
var seeds = func() map[protoreflect.FullName]proto.Message {
	req := typicalRequest()
	return map[protoreflect.FullName]proto.Message{
		"chaperone.v1.CheckRequest":              req,
		"chaperone.v1.BatchCheckRequest":         &chaperonev1.BatchCheckRequest{Requests: []*chaperonev1.CheckRequest{req, req}},
		"chaperone.v1.Subject":                   req.GetSubject(),
		"chaperone.v1.Resource":                  req.GetResource(),
		"chaperone.v1.Context":                   req.GetContext(),
		"chaperone.v1.Coding":                    req.GetResource().GetSecurityLabels()[0],
		"chaperone.v1.ConsentServiceListRequest": &chaperonev1.ConsentServiceListRequest{Patient: "Patient/52"},
		"chaperone.v1.AccessServiceListBreakGlassRequest": &chaperonev1.AccessServiceListBreakGlassRequest{
			Subject: "Practitioner/p1", Patient: "Patient/52"},
	}
}()

func typicalRequest() *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1", Scopes: []string{"user/Observation.rs"}, ClientId: "portal",
			LaunchPatient: "Patient/52"},
		Action: "read",
		Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1",
			Author: "Practitioner/p2", Codes: []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5"}},
			Categories:     []*chaperonev1.Coding{{Code: "laboratory"}},
			SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}}},
		PurposeOfUse: "TREAT",
		Context: &chaperonev1.Context{Ip: "10.1.2.3", NetworkZone: "corporate", CorrelationId: "c-1",
			BreakGlassReason: "unconscious patient, checking allergies"},
	}
}

// TestQuickNeverLaxer holds the quick check to protovalidate: on random
// messages of every API type, a message the plan passes must keep every
// rule. It also reports how often the plan defers a valid message.
func TestQuickNeverLaxer(t *testing.T) {
	t.Parallel()
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	compiled := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		md := mt.Descriptor()
		if md.ParentFile().Package() != "chaperone.v1" {
			return true
		}
		if v.quick.plan(md) != nil {
			compiled++
		}
		var passed, valid, deferred int
		for i := range 600 {
			m := mt.New()
			if base, ok := seeds[md.FullName()]; ok && i%4 > 0 {
				// Mostly valid: a valid message with a few fields changed.
				m = proto.Clone(base).ProtoReflect()
				for range 1 + rng.IntN(3) {
					mutate(rng, m, 0)
				}
			} else {
				fill(rng, m, 0)
			}
			msg := m.Interface()
			quick := v.quick.valid(msg)
			full := v.v.Validate(msg) == nil
			if quick && !full {
				t.Fatalf("%s: the quick check passed a message protovalidate refuses: %v\n%v", md.FullName(), v.v.Validate(msg), msg)
			}
			if quick {
				passed++
			}
			if full {
				valid++
				if !quick {
					deferred++
				}
			}
		}
		t.Logf("%s: compiled=%t, %d of 600 valid, %d passed quickly, %d valid ones deferred", md.FullName(), v.quick.plan(md) != nil, valid, passed, deferred)
		return true
	})
	if compiled == 0 {
		t.Fatal("no API message type compiled to a quick plan")
	}
}

// TestQuickPassesTypicalRequests: the requests the decision path sees take
// the fast path, and a broken one goes to protovalidate for its wording.
func TestQuickPassesTypicalRequests(t *testing.T) {
	t.Parallel()
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	req := typicalRequest()
	for _, msg := range []proto.Message{req, &chaperonev1.BatchCheckRequest{Requests: []*chaperonev1.CheckRequest{req, req}}} {
		if !v.quick.valid(msg) {
			t.Errorf("%T: not passed by the quick check", msg)
		}
		if err := v.Validate(msg); err != nil {
			t.Errorf("%T: %v", msg, err)
		}
	}
	bad := proto.Clone(req).(*chaperonev1.CheckRequest)
	bad.PurposeOfUse = "treat"
	if v.quick.valid(bad) {
		t.Error("purposeOfUse treat passed the quick check")
	}
	err = v.Validate(bad)
	if err == nil || !strings.Contains(err.Error(), "purposeOfUse") {
		t.Errorf("Validate = %v, want a violation naming purposeOfUse", err)
	}
}

func BenchmarkValidate(b *testing.B) {
	v, err := New()
	if err != nil {
		b.Fatal(err)
	}
	req := typicalRequest()
	b.Run("quick", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.Validate(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protovalidate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.v.Validate(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestQuickRuleFreeTypes: a type that reaches no rule, through recursion
// (google.protobuf.Struct) or map values (Envoy's metadata), passes the
// quick check, as protovalidate passes it; a type with rules does not
// count as rule free.
func TestQuickRuleFreeTypes(t *testing.T) {
	t.Parallel()
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		msg  proto.Message
		free bool
	}{
		{&structpb.Struct{}, true},
		{&authv3.CheckRequest{}, true},
		{&chaperonev1.CheckRequest{}, false},
		{&chaperonev1.BatchCheckRequest{}, false},
	} {
		md := tc.msg.ProtoReflect().Descriptor()
		if got := ruleFree(md, map[protoreflect.FullName]bool{}); got != tc.free {
			t.Errorf("ruleFree(%s) = %t, want %t", md.FullName(), got, tc.free)
		}
	}
	s, err := structpb.NewStruct(map[string]any{"a": map[string]any{"b": []any{1, "x", nil, map[string]any{}}}})
	if err != nil {
		t.Fatal(err)
	}
	envoy := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/fhir/Observation/o1", Headers: map[string]string{"authorization": "Bearer x"},
		}},
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": s}},
		ContextExtensions: map[string]string{"k": "v"},
	}}
	for _, msg := range []proto.Message{s, envoy, &authv3.CheckRequest{}} {
		if !v.quick.valid(msg) {
			t.Errorf("%T: not passed by the quick check", msg)
		}
		if err := v.v.Validate(msg); err != nil {
			t.Errorf("%T: protovalidate: %v", msg, err)
		}
	}
}
