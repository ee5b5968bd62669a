package engine

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestMemoKeyCoversEveryField changes every field of the request, one at a
// time (and every field of each coding, identifier and timestamp in it), and
// requires the memo key to change: a field the key missed could make the
// memo answer for a different request. It walks the message descriptors, so
// a field added to the API fails here until memoKey includes it.
func TestMemoKeyCoversEveryField(t *testing.T) {
	t.Parallel()
	// Fields policies do not see, or see only through the facts.
	skipped := map[protoreflect.FullName]string{
		"chaperone.v1.Context.time":           "enters the key as the decision time at the bundle's resolution",
		"chaperone.v1.Context.correlation_id": "audit only, not visible to policies",
	}
	containers := map[protoreflect.FullName]bool{
		"chaperone.v1.Subject": true, "chaperone.v1.Resource": true, "chaperone.v1.Context": true,
	}
	base := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{}, Resource: &chaperonev1.Resource{}, Context: &chaperonev1.Context{}}
	key := func(r *chaperonev1.CheckRequest) string {
		f := facts{req: r, at: time.Unix(1700000000, 0), consent: ConsentNoConsent}
		k, err := memoKey(nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		return string(k)
	}
	baseKey := key(base)

	// scalar is value variant v (0 or 1) of a scalar field.
	scalar := func(fd protoreflect.FieldDescriptor, v int) protoreflect.Value {
		switch fd.Kind() {
		case protoreflect.StringKind:
			return protoreflect.ValueOfString(string(rune('a' + v)))
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return protoreflect.ValueOfInt64(int64(v + 1))
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			return protoreflect.ValueOfInt32(int32(v + 1))
		case protoreflect.BoolKind:
			return protoreflect.ValueOfBool(v == 1)
		case protoreflect.EnumKind:
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(v + 1))
		default:
			t.Fatalf("%s: kind %s not handled by this test", fd.FullName(), fd.Kind())
			return protoreflect.Value{}
		}
	}
	// element builds a message value of fd with every field set to variant
	// 0, except field `vary` set to variant 1.
	element := func(m protoreflect.Message, fd protoreflect.FieldDescriptor, vary protoreflect.FieldDescriptor) protoreflect.Value {
		var e protoreflect.Message
		if fd.IsList() {
			e = m.Mutable(fd).List().NewElement().Message()
		} else {
			e = m.NewField(fd).Message()
		}
		fields := e.Descriptor().Fields()
		for i := range fields.Len() {
			sf := fields.Get(i)
			v := 0
			if sf == vary {
				v = 1
			}
			e.Set(sf, scalar(sf, v))
		}
		return protoreflect.ValueOfMessage(e)
	}
	set := func(m protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
		if fd.IsList() {
			m.Mutable(fd).List().Append(v)
		} else {
			m.Set(fd, v)
		}
	}

	var walk func(path string, get func(*chaperonev1.CheckRequest) protoreflect.Message, md protoreflect.MessageDescriptor)
	walk = func(path string, get func(*chaperonev1.CheckRequest) protoreflect.Message, md protoreflect.MessageDescriptor) {
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if _, ok := skipped[fd.FullName()]; ok {
				continue
			}
			name := path + string(fd.Name())
			if fd.Message() != nil && containers[fd.Message().FullName()] {
				walk(name+".", func(r *chaperonev1.CheckRequest) protoreflect.Message { return get(r).Mutable(fd).Message() }, fd.Message())
				continue
			}
			mutate := func(f func(m protoreflect.Message)) string {
				r := proto.Clone(base).(*chaperonev1.CheckRequest)
				f(get(r))
				return key(r)
			}
			if fd.Message() == nil {
				if k := mutate(func(m protoreflect.Message) { set(m, fd, scalar(fd, 1)) }); k == baseKey {
					t.Errorf("memo key ignores %s", name)
				}
				continue
			}
			// A message field (coding, identifier, timestamp): present vs
			// absent, and each of its fields.
			k0 := mutate(func(m protoreflect.Message) { set(m, fd, element(m, fd, nil)) })
			if k0 == baseKey {
				t.Errorf("memo key ignores %s", name)
			}
			sub := fd.Message().Fields()
			for j := range sub.Len() {
				sf := sub.Get(j)
				if k := mutate(func(m protoreflect.Message) { set(m, fd, element(m, fd, sf)) }); k == k0 {
					t.Errorf("memo key ignores %s.%s", name, sf.Name())
				}
			}
		}
	}
	walk("", func(r *chaperonev1.CheckRequest) protoreflect.Message { return r.ProtoReflect() }, base.ProtoReflect().Descriptor())

	// Adjacent strings never run together.
	a := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{Id: "ab", Kind: ""}}
	b := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{Id: "a", Kind: "b"}}
	if key(a) == key(b) {
		t.Error("memo key is ambiguous between adjacent fields")
	}
	c := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{Roles: []string{"a", "b"}}}
	d := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{Roles: []string{"ab"}}}
	if key(c) == key(d) {
		t.Error("memo key is ambiguous between list items")
	}
}

// TestMemoDoorkeeper: an outcome is stored the second time its key is put,
// so keys that never repeat leave no entries.
func TestMemoDoorkeeper(t *testing.T) {
	t.Parallel()
	m := newMemo[int](1600)
	m.put([]byte("a"), 1)
	if _, ok := m.get([]byte("a")); ok {
		t.Fatal("stored on the first put")
	}
	m.put([]byte("a"), 1)
	if v, ok := m.get([]byte("a")); !ok || v != 1 {
		t.Fatalf("get after the second put = %d, %t", v, ok)
	}
	for i := range 10000 {
		m.put([]byte("once-"+strconv.Itoa(i)), i)
	}
	n := 0
	for i := range m.shards {
		n += len(m.shards[i].cur) + len(m.shards[i].prev)
	}
	if n != 1 {
		t.Errorf("%d entries after 10,000 keys put once, want 1", n)
	}
}
