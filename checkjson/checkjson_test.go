package checkjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/chaperone-pdp/chaperone/checkjson"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// The messages each direction handles.
var (
	decoded = []proto.Message{&chaperonev1.CheckRequest{}, &chaperonev1.BatchCheckRequest{}}
	encoded = []proto.Message{&chaperonev1.CheckResponse{}, &chaperonev1.BatchCheckResponse{}}
)

// plainStrings need no escape in JSON; otherStrings do, or are not UTF-8.
var (
	plainStrings = []string{"", "a", "Practitioner/p1", "TREAT", "read", "Patient/52", "é", "日本語", "\u2028", "\ufffd", "x y", "/", "<&>", "\x7f", "patient/*.read"}
	otherStrings = []string{"\"", "a\\b", "\n", "\t", "\x00", "\x1f", "tab\there", "\xff", "a\xc3", "\xed\xa0\x80"}
)

// gen fills m by reflection over every field of its descriptor, each set
// with probability p (1: all of them), strings drawn from plain or from
// both pools.
type gen struct {
	rng   *rand.Rand
	p     float64
	plain bool
}

func (g gen) str() string {
	if g.plain || g.rng.IntN(4) > 0 {
		return plainStrings[g.rng.IntN(len(plainStrings))]
	}
	return otherStrings[g.rng.IntN(len(otherStrings))]
}

func (g gen) fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if g.rng.Float64() >= g.p {
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			for range 1 + g.rng.IntN(3) {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					g.fill(e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(g.scalar(fd))
				}
			}
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			if depth > 4 {
				continue
			}
			g.fill(m.Mutable(fd).Message(), depth+1)
			continue
		}
		m.Set(fd, g.scalar(fd))
	}
}

func (g gen) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(g.str())
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(g.rng.IntN(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if g.plain || g.rng.IntN(5) > 0 {
			return protoreflect.ValueOfEnum(vals.Get(g.rng.IntN(vals.Len())).Number())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(g.rng.IntN(50)))
	case protoreflect.Int64Kind:
		switch fd.FullName() {
		case "google.protobuf.Timestamp.seconds":
			return protoreflect.ValueOfInt64(g.rng.Int64N(253402300799+62135596800) - 62135596800)
		case "google.protobuf.Duration.seconds":
			if g.plain {
				return protoreflect.ValueOfInt64(g.rng.Int64N(1000))
			}
			return protoreflect.ValueOfInt64(g.rng.Int64N(2*315576000010) - 315576000010)
		}
		return protoreflect.ValueOfInt64(g.rng.Int64())
	case protoreflect.Int32Kind:
		if fd.FullName() == "google.protobuf.Timestamp.nanos" {
			return protoreflect.ValueOfInt32(pickNanos(g.rng))
		}
		if fd.FullName() == "google.protobuf.Duration.nanos" {
			n := pickNanos(g.rng)
			if !g.plain && g.rng.IntN(3) == 0 {
				n = -n
			}
			return protoreflect.ValueOfInt32(n)
		}
		return protoreflect.ValueOfInt32(g.rng.Int32())
	}
	panic(fmt.Sprintf("gen: field %s of kind %v: teach the generator (and checkjson) this kind", fd.FullName(), fd.Kind()))
}

func pickNanos(rng *rand.Rand) int32 {
	switch rng.IntN(4) {
	case 0:
		return 0
	case 1:
		return int32(rng.IntN(1000)) * 1e6
	case 2:
		return int32(rng.IntN(1e6)) * 1e3
	}
	return int32(rng.IntN(1e9))
}

// protojsonDecode is what the fast path answers for: protojson with
// unknown members refused.
func protojsonDecode(data []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{}.Unmarshal(data, m)
}

// checkDecode: whenever the fast path reads data, protojson reads it too,
// into the same message. It returns whether the fast path read it.
func checkDecode(t *testing.T, data []byte, typ proto.Message) bool {
	t.Helper()
	fast, slow := typ.ProtoReflect().New().Interface(), typ.ProtoReflect().New().Interface()
	ok := checkjson.Unmarshal(data, fast)
	err := protojsonDecode(data, slow)
	if ok && err != nil {
		t.Fatalf("fast path read what protojson refuses (%v):\n%s", err, data)
	}
	if ok && !proto.Equal(fast, slow) {
		t.Fatalf("fast path and protojson differ on\n%s\nfast: %v\nprotojson: %v", data, fast, slow)
	}
	return ok
}

func marshalOptions(rng *rand.Rand) protojson.MarshalOptions {
	o := protojson.MarshalOptions{UseProtoNames: rng.IntN(2) == 0}
	if rng.IntN(3) == 0 {
		o.Multiline, o.Indent = true, pickOne(rng, "  ", "\t", " ")
	}
	return o
}

func pickOne[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// TestEveryFieldOnFastPath sets each field of each decoded message alone
// (found by reflection, so a new field fails here until the fast path
// reads it), in both spellings, and requires the fast path to read it
// into what protojson reads.
func TestEveryFieldOnFastPath(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, typ := range decoded {
		var walk func(md protoreflect.MessageDescriptor, wrap func(protoreflect.Message) proto.Message, path string, depth int)
		walk = func(md protoreflect.MessageDescriptor, build func(protoreflect.Message) proto.Message, path string, depth int) {
			fields := md.Fields()
			for i := range fields.Len() {
				fd := fields.Get(i)
				name := path + string(fd.Name())
				for _, protoNames := range []bool{false, true} {
					for range 5 {
						msg := build(nil)
						leaf := findLeaf(msg.ProtoReflect(), md)
						gen{rng: rng, p: 0}.fill(leaf, 0) // nothing
						g := gen{rng: rng, p: 1, plain: true}
						setOne(g, leaf, fd)
						data, err := protojson.MarshalOptions{UseProtoNames: protoNames}.Marshal(msg)
						if err != nil {
							t.Fatal(err)
						}
						if !checkDecode(t, data, typ) {
							t.Fatalf("%s: field %s is not on the fast path (checkjson/decode.go must read it):\n%s", typ.ProtoReflect().Descriptor().Name(), name, data)
						}
					}
				}
				if fd.Kind() == protoreflect.MessageKind && depth < 3 && !strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") {
					inner := fd
					walk(fd.Message(), func(protoreflect.Message) proto.Message {
						outer := build(nil)
						leaf := findLeaf(outer.ProtoReflect(), md)
						if inner.IsList() {
							l := leaf.Mutable(inner).List()
							l.Append(l.NewElement())
						} else {
							leaf.Mutable(inner)
						}
						return outer
					}, name+".", depth+1)
				}
			}
		}
		walk(typ.ProtoReflect().Descriptor(), func(protoreflect.Message) proto.Message {
			return typ.ProtoReflect().New().Interface()
		}, "", 0)
	}
}

// findLeaf returns the deepest message of type md reachable through the
// set message fields and first list elements of m (the message a walk
// step fills).
func findLeaf(m protoreflect.Message, md protoreflect.MessageDescriptor) protoreflect.Message {
	var found protoreflect.Message
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if m.Descriptor().FullName() == md.FullName() {
			found = m
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			if fd.IsList() {
				if v.List().Len() > 0 {
					visit(v.List().Get(0).Message())
				}
			} else {
				visit(v.Message())
			}
			return true
		})
	}
	visit(m)
	return found
}

func setOne(g gen, m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	switch {
	case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
		l := m.Mutable(fd).List()
		e := l.NewElement()
		g.fill(e.Message(), 0)
		l.Append(e)
	case fd.IsList():
		l := m.Mutable(fd).List()
		l.Append(g.scalar(fd))
		l.Append(g.scalar(fd))
	case fd.Kind() == protoreflect.MessageKind:
		g.fill(m.Mutable(fd).Message(), 0)
	default:
		m.Set(fd, g.scalar(fd))
	}
}

// TestDecodeGenerated: random messages of every field, plain strings or
// not, in both spellings, compact or indented: the fast path reads every
// encoding protojson wrote with no escape in it, and reads it as protojson.
func TestDecodeGenerated(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 4000 {
		typ := decoded[i%len(decoded)]
		m := typ.ProtoReflect().New()
		plain := i%2 == 0
		gen{rng: rng, p: 0.6, plain: plain}.fill(m, 0)
		data, err := marshalOptions(rng).Marshal(m.Interface())
		if err != nil {
			continue // invalid UTF-8: protojson will not write it
		}
		if !checkDecode(t, data, typ) && plain {
			t.Fatalf("plain message not on the fast path:\n%s", data)
		}
	}
}

// mutations turn a valid encoding into a nearby one, valid or not.
var mutations = []func(rng *rand.Rand, data []byte) []byte{
	func(rng *rand.Rand, b []byte) []byte { // drop a byte
		i := rng.IntN(len(b))
		return append(b[:i:i], b[i+1:]...)
	},
	func(rng *rand.Rand, b []byte) []byte { // insert a byte
		i := rng.IntN(len(b) + 1)
		c := pickOne[byte](rng, '"', '\\', ',', ':', '{', '}', '[', ']', ' ', 'n', '0', 0, 0x1f, 0x80, 0xff, 'u', '\n', 't')
		return append(append(b[:i:i], c), b[i:]...)
	},
	func(rng *rand.Rand, b []byte) []byte { // replace a string value's opening with another value
		return replaceValue(rng, b, pickOne(rng, `null`, `1`, `true`, `[]`, `{}`, `"\u0041"`, `"\ud800"`, `"a\"b"`, `-0`, `""`, `[null]`, `{"a":1}`))
	},
	func(rng *rand.Rand, b []byte) []byte { // rename a member
		return renameMember(rng, b, pickOne(rng, "unknown", "Action", "purposeofuse", "purpose_Of_use", "[ext]", "subject", "id", "requests", "time", "resource", "pur\\u0070oseOfUse"))
	},
	func(rng *rand.Rand, b []byte) []byte { // duplicate the first member of an object
		i := bytes.IndexByte(b[1:], '{')
		if i < 0 || rng.IntN(2) == 0 {
			i = 0
		} else {
			i++
		}
		end := memberEnd(b, i+1)
		if end < 0 {
			return b
		}
		m := append([]byte{}, b[i+1:end]...)
		return append(append(append(b[:end:end], ','), m...), b[end:]...)
	},
	func(rng *rand.Rand, b []byte) []byte { // trailing bytes
		return append(b, pickOne(rng, " ", "\n", "x", "}", "{}", "\x00")...)
	},
	func(rng *rand.Rand, b []byte) []byte { // a timestamp respelt
		return replaceValue(rng, b, pickOne(rng, `"2024-01-02T03:04:05Z"`, `"2024-01-02T03:04:05.123456789Z"`, `"2024-01-02T03:04:05.1234567891Z"`,
			`"2024-01-02t03:04:05z"`, `"2024-01-02T03:04:05+01:00"`, `"2024-13-02T03:04:05Z"`, `"0000-01-01T00:00:00Z"`, `"9999-12-31T23:59:59.999999999Z"`,
			`"2024-01-02 03:04:05Z"`, `"2024-01-02T03:04:05"`, `"2024-01-02T24:00:00Z"`, `"2024-02-30T00:00:00Z"`))
	},
}

// replaceValue replaces a random string value (the text after a colon)
// with v.
func replaceValue(rng *rand.Rand, b []byte, v string) []byte {
	var at []int
	for i := 0; i+1 < len(b); i++ {
		if b[i] == ':' {
			at = append(at, i+1)
		}
	}
	if len(at) == 0 {
		return b
	}
	i := at[rng.IntN(len(at))]
	for i < len(b) && (b[i] == ' ' || b[i] == '\n') {
		i++
	}
	end := valueEnd(b, i)
	if end < 0 {
		return b
	}
	return append(append(b[:i:i], v...), b[end:]...)
}

// renameMember renames a random member.
func renameMember(rng *rand.Rand, b []byte, name string) []byte {
	var at []int
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '"' && i > 0 {
			j := i - 1
			for j > 0 && (b[j] == ' ' || b[j] == '\n' || b[j] == '\t') {
				j--
			}
			if b[j] == '{' || b[j] == ',' {
				at = append(at, i)
			}
		}
	}
	if len(at) == 0 {
		return b
	}
	i := at[rng.IntN(len(at))]
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 {
		return b
	}
	return append(append(b[:i+1:i+1], name...), b[i+1+end:]...)
}

// valueEnd returns the end of the JSON value starting at i (-1 if none).
func valueEnd(b []byte, i int) int {
	dec := json.NewDecoder(bytes.NewReader(b[i:]))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return -1
	}
	return i + int(dec.InputOffset())
}

// memberEnd returns the end of the member starting at i (after '{').
func memberEnd(b []byte, i int) int {
	c := bytes.IndexByte(b[i:], ':')
	if c < 0 {
		return -1
	}
	j := i + c + 1
	for j < len(b) && (b[j] == ' ' || b[j] == '\n' || b[j] == '\t') {
		j++
	}
	return valueEnd(b, j)
}

// TestDecodeMutated: every mutation of generated encodings (dropped and
// inserted bytes, wrong types, null, escapes, unknown, respelt and
// duplicate members, trailing bytes, timestamps in and out of range) is
// read by the fast path only as protojson reads it; whatever protojson
// refuses, the fast path leaves to it.
func TestDecodeMutated(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	var fast, refused int
	for i := range 20000 {
		typ := decoded[i%len(decoded)]
		m := typ.ProtoReflect().New()
		gen{rng: rng, p: 0.5, plain: true}.fill(m, 0)
		data, err := marshalOptions(rng).Marshal(m.Interface())
		if err != nil || len(data) == 0 {
			t.Fatal(err)
		}
		for range 1 + rng.IntN(3) {
			data = mutations[rng.IntN(len(mutations))](rng, data)
			if len(data) == 0 {
				break
			}
		}
		if checkDecode(t, data, typ) {
			fast++
		}
		if protojsonDecode(data, typ.ProtoReflect().New().Interface()) != nil {
			refused++
		}
	}
	t.Logf("20000 mutated encodings: %d read on the fast path, %d refused by protojson", fast, refused)
	if fast < 2000 || refused < 2000 {
		t.Errorf("mutations too weak: %d fast, %d refused", fast, refused)
	}
}

// TestDecodeCases: the cases protojson refuses, one by one.
func TestDecodeCases(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		data string
		fast bool
	}{
		{name: "plain", data: `{"action":"read","purposeOfUse":"TREAT","subject":{"id":"Practitioner/p1","roles":["clinician"]}}`, fast: true},
		{name: "proto names", data: `{"purpose_of_use":"TREAT","subject":{"client_id":"c","launch_patient":"Patient/1"}}`, fast: true},
		{name: "whitespace", data: " \t\n{ \"action\" : \"read\" , \"resource\" : { } }\r\n", fast: true},
		{name: "empty object", data: `{}`, fast: true},
		{name: "empty lists", data: `{"subject":{"roles":[],"identifiers":[]}}`, fast: true},
		{name: "timestamp", data: `{"context":{"time":"2024-01-02T03:04:05.5+01:00"}}`, fast: true},
		{name: "unknown member", data: `{"actio":"read"}`},
		{name: "unknown nested member", data: `{"resource":{"securityLabel":[]}}`},
		{name: "wrong case", data: `{"Action":"read"}`},
		{name: "duplicate", data: `{"action":"read","action":"read"}`},
		{name: "duplicate across spellings", data: `{"purposeOfUse":"TREAT","purpose_of_use":"TREAT"}`},
		{name: "duplicate list", data: `{"subject":{"roles":[],"roles":["a"]}}`},
		{name: "null", data: `{"action":null}`},
		{name: "null message", data: `{"subject":null}`},
		{name: "null element", data: `{"subject":{"roles":[null]}}`},
		{name: "number", data: `{"action":1}`},
		{name: "bool", data: `{"action":true}`},
		{name: "object for string", data: `{"action":{}}`},
		{name: "string for list", data: `{"subject":{"roles":"a"}}`},
		{name: "escape", data: `{"action":"re\u0061d"}`},
		{name: "escaped name", data: `{"act\u0069on":"read"}`},
		{name: "lone surrogate", data: `{"action":"\ud800"}`},
		{name: "control character", data: "{\"action\":\"a\x01\"}"},
		{name: "invalid UTF-8", data: "{\"action\":\"\xff\"}"},
		{name: "trailing comma", data: `{"action":"read",}`},
		{name: "trailing bytes", data: `{"action":"read"} x`},
		{name: "two objects", data: `{}{}`},
		{name: "not an object", data: `["read"]`},
		{name: "bad timestamp", data: `{"context":{"time":"2024-01-02"}}`},
		{name: "timestamp out of range", data: `{"context":{"time":"0000-12-31T23:59:59Z"}}`},
		{name: "timestamp too precise", data: `{"context":{"time":"2024-01-02T03:04:05.1234567890Z"}}`},
		{name: "extension", data: `{"[chaperone.v1.x]":"a"}`},
		{name: "batch", data: `{"requests":[{"action":"read"},{}]}`, fast: true},
		{name: "batch null", data: `{"requests":[null]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			typ := proto.Message(&chaperonev1.CheckRequest{})
			if strings.HasPrefix(tc.name, "batch") {
				typ = &chaperonev1.BatchCheckRequest{}
			}
			if got := checkDecode(t, []byte(tc.data), typ); got != tc.fast {
				t.Errorf("fast path %v, want %v", got, tc.fast)
			}
		})
	}
}

// checkEncode: the fast path writes what protojson writes (compacted), and
// declines exactly what protojson refuses. It returns whether it wrote.
func checkEncode(t *testing.T, m proto.Message) bool {
	t.Helper()
	prefix := []byte("prefix")
	got, ok := checkjson.Append(prefix, m)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("Append lost dst")
	}
	want, err := protojson.Marshal(m)
	if err != nil {
		if ok {
			t.Fatalf("fast path wrote what protojson refuses (%v): %v", err, m)
		}
		return false
	}
	if !ok {
		return false
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[len(prefix):], compact.Bytes()) {
		t.Fatalf("fast path and protojson differ on %v\nfast:      %s\nprotojson: %s", m, got[len(prefix):], compact.Bytes())
	}
	return true
}

// TestEncodeGenerated: random responses over every field (reflection, so
// a new field fails here until the fast path writes it), strings that
// need escapes or are not UTF-8, enum numbers without a name, Durations
// in and out of range.
func TestEncodeGenerated(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	var written int
	for i := range 6000 {
		typ := encoded[i%len(encoded)]
		m := typ.ProtoReflect().New()
		p := 0.6
		if i%10 == 0 {
			p = 1
		}
		gen{rng: rng, p: p, plain: i%3 == 0}.fill(m, 0)
		ok := checkEncode(t, m.Interface())
		if ok {
			written++
		}
		if !ok && i%3 == 0 {
			if _, err := protojson.Marshal(m.Interface()); err == nil {
				t.Fatalf("plain response not on the fast path: %v", m)
			}
		}
	}
	if written < 3000 {
		t.Errorf("only %d of 6000 written on the fast path", written)
	}
	// The empty messages and a nil list element.
	for _, m := range []proto.Message{&chaperonev1.CheckResponse{}, &chaperonev1.BatchCheckResponse{},
		&chaperonev1.CheckResponse{Obligations: &chaperonev1.Obligations{}}} {
		if !checkEncode(t, m) {
			t.Errorf("%v not on the fast path", m)
		}
	}
	if _, ok := checkjson.Append(nil, &chaperonev1.CheckResponse{Reasons: []*chaperonev1.Reason{nil}}); ok {
		t.Error("nil list element written")
	}
	if _, ok := checkjson.Append(nil, &chaperonev1.CheckRequest{}); ok {
		t.Error("a request written")
	}
}
