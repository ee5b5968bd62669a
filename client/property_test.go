package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// The generators below build requests by reflection over the message
// descriptors, so a field added to the API is generated, edited and held
// to the properties without touching this file; a field of a kind they do
// not know fails the test until it is taught.

// maxDepth bounds how deep generated messages nest (Subject, Identifier,
// Timestamp: 3 is enough to reach every field of a CheckRequest).
const maxDepth = 4

// drawValue draws a value for fd (one element when fd is a list) in m
// from small pools, so that two draws are often the same.
func drawValue(t *rapid.T, m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int, label string) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(rapid.SampledFrom([]string{"", "a", "b", "Patient/1"}).Draw(t, label))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rapid.Bool().Draw(t, label))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(rapid.IntRange(0, vals.Len()-1).Draw(t, label)).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(rapid.Int32Range(0, 2).Draw(t, label))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(rapid.Int64Range(0, 2).Draw(t, label))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(rapid.Uint32Range(0, 2).Draw(t, label))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(rapid.Uint64Range(0, 2).Draw(t, label))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(rapid.SampledFrom([]string{"", "a", "b"}).Draw(t, label)))
	case protoreflect.MessageKind:
		var sub protoreflect.Message
		if fd.IsList() {
			sub = m.Mutable(fd).List().NewElement().Message()
		} else {
			sub = m.NewField(fd).Message()
		}
		if depth > 0 {
			fill(t, sub, depth-1, label+".")
		}
		return protoreflect.ValueOfMessage(sub)
	}
	t.Fatalf("%s: no generator for kind %s", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}

// fill sets a random subset of m's fields.
func fill(t *rapid.T, m protoreflect.Message, depth int, prefix string) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		label := prefix + string(fd.Name())
		if !rapid.Bool().Draw(t, label+"?") {
			continue
		}
		setField(t, m, fd, depth, label)
	}
}

// setField gives fd in m a new random value (a new list of 1 or 2 for a
// list).
func setField(t *rapid.T, m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int, label string) {
	switch {
	case fd.IsMap():
		t.Fatalf("%s: no generator for maps", fd.FullName())
	case fd.IsList():
		m.Clear(fd)
		l := m.Mutable(fd).List()
		for j := range rapid.IntRange(1, 2).Draw(t, label+"#") {
			l.Append(drawValue(t, m, fd, depth, fmt.Sprintf("%s[%d]", label, j)))
		}
	default:
		m.Set(fd, drawValue(t, m, fd, depth, label))
	}
}

// edit changes one field somewhere in m, or clears it: the nearby
// request that must not share an answer unless it is the same request.
func edit(t *rapid.T, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	fd := fields.Get(rapid.IntRange(0, fields.Len()-1).Draw(t, "field"))
	switch action := rapid.IntRange(0, 2).Draw(t, "action"); {
	case action == 0:
		m.Clear(fd)
	case action == 1 && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && depth > 0:
		edit(t, m.Mutable(fd).Message(), depth-1)
	default:
		setField(t, m, fd, depth, "edit")
	}
}

// drawRequest draws a CheckRequest.
func drawRequest(t *rapid.T) *chaperonev1.CheckRequest {
	req := &chaperonev1.CheckRequest{}
	fill(t, req.ProtoReflect(), maxDepth, "")
	return req
}

// canonical is req without the fields that are not part of a decision
// (context.time, context.correlationId; an emptied context is none).
func canonical(req *chaperonev1.CheckRequest) *chaperonev1.CheckRequest {
	out := proto.Clone(req).(*chaperonev1.CheckRequest)
	if c := out.GetContext(); c != nil {
		c.Time, c.CorrelationId = nil, ""
		if proto.Size(c) == 0 {
			out.Context = nil
		}
	}
	return out
}

// TestKeyProperty: two requests share a cache key exactly when they are
// the same request but for context.time and context.correlationId.
func TestKeyProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		a := drawRequest(t)
		b := proto.Clone(a).(*chaperonev1.CheckRequest)
		for range rapid.IntRange(0, 3).Draw(t, "edits") {
			edit(t, b.ProtoReflect(), maxDepth)
		}
		ka, err := client.Key(a)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := client.Key(b)
		if err != nil {
			t.Fatal(err)
		}
		same := proto.Equal(canonical(a), canonical(b))
		if bytes.Equal(ka, kb) != same {
			t.Fatalf("same request %v but same key %v:\n%v\n%v", same, bytes.Equal(ka, kb), a, b)
		}
	})
}

// TestCacheNeverAnswersAnotherRequest: through a real client, cache and
// loopback PDP, every answer is the answer to the request asked. The PDP
// answers each request with an ALLOW, reusable for an hour, whose
// decision id is the request's canonical encoding; the client's cache is
// small, so entries are also evicted and asked again.
func TestCacheNeverAnswersAnotherRequest(t *testing.T) {
	t.Parallel()
	answer := func(r *chaperonev1.CheckRequest) *chaperonev1.CheckResponse {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(canonical(r))
		if err != nil {
			panic(err)
		}
		return &chaperonev1.CheckResponse{
			Decision: chaperonev1.Decision_DECISION_ALLOW, CacheTtl: durationpb.New(time.Hour),
			DecisionId: base64.StdEncoding.EncodeToString(b),
		}
	}
	f := &fakePDP{
		check: func(r *chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, error) { return answer(r), nil },
		batch: func(r *chaperonev1.BatchCheckRequest) (*chaperonev1.BatchCheckResponse, error) {
			out := &chaperonev1.BatchCheckResponse{}
			for _, req := range r.GetRequests() {
				out.Responses = append(out.Responses, answer(req))
			}
			return out, nil
		},
	}
	url := startFake(t, f)
	rapid.Check(t, func(t *rapid.T) {
		c, err := client.New(url, generous(), client.WithCache(rapid.IntRange(1, 4).Draw(t, "cache")))
		if err != nil {
			t.Fatal(err)
		}
		pool := []*chaperonev1.CheckRequest{drawRequest(t)}
		for range 3 {
			r := proto.Clone(pool[rapid.IntRange(0, len(pool)-1).Draw(t, "base")]).(*chaperonev1.CheckRequest)
			edit(t, r.ProtoReflect(), maxDepth)
			pool = append(pool, r)
		}
		ask := rapid.SliceOfN(rapid.IntRange(0, len(pool)-1), 1, 12).Draw(t, "asks")
		for _, i := range ask {
			want := answer(pool[i]).GetDecisionId()
			if rapid.Bool().Draw(t, "batch") {
				got := c.BatchCheck(context.Background(), []*chaperonev1.CheckRequest{pool[i], pool[0]})
				if got[0].GetDecisionId() != want || got[1].GetDecisionId() != answer(pool[0]).GetDecisionId() {
					t.Fatalf("BatchCheck answered request %d with another request's answer", i)
				}
				continue
			}
			if got := c.Check(context.Background(), pool[i]); got.GetDecisionId() != want {
				t.Fatalf("Check answered request %d with another request's answer (%s)", i, got.GetDecision())
			}
		}
	})
}

// TestKeyCoversEveryField sets each field of a CheckRequest, however
// deep, on its own: the key must change for every one but the two
// volatile context fields, and must not change for those.
func TestKeyCoversEveryField(t *testing.T) {
	t.Parallel()
	volatile := map[protoreflect.FullName]bool{
		"chaperone.v1.Context.time":           true,
		"chaperone.v1.Context.correlation_id": true,
	}
	var paths [][]protoreflect.FieldDescriptor
	var walk func(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor)
	walk = func(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor) {
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			p := append(append([]protoreflect.FieldDescriptor(nil), prefix...), fd)
			paths = append(paths, p)
			if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && len(p) < maxDepth && !volatile[fd.FullName()] {
				walk(fd.Message(), p)
			}
		}
	}
	walk((&chaperonev1.CheckRequest{}).ProtoReflect().Descriptor(), nil)
	if len(paths) < 30 {
		t.Fatalf("only %d field paths found", len(paths))
	}
	for _, p := range paths {
		name := ""
		for _, fd := range p {
			name += "." + string(fd.Name())
		}
		t.Run(name[1:], func(t *testing.T) {
			t.Parallel()
			base := &chaperonev1.CheckRequest{}
			m := base.ProtoReflect()
			for _, fd := range p[:len(p)-1] {
				m = m.Mutable(fd).Message()
			}
			withField := proto.Clone(base).(*chaperonev1.CheckRequest)
			wm := withField.ProtoReflect()
			for _, fd := range p[:len(p)-1] {
				wm = wm.Mutable(fd).Message()
			}
			last := p[len(p)-1]
			setNonZero(t, wm, last)
			kb, err := client.Key(base)
			if err != nil {
				t.Fatal(err)
			}
			kw, err := client.Key(withField)
			if err != nil {
				t.Fatal(err)
			}
			// Volatile fields must not change the key, nor an empty
			// context (what is left of one with only volatile fields);
			// everything else must.
			want := last.FullName() != "chaperone.v1.CheckRequest.context"
			for _, fd := range p {
				want = want && !volatile[fd.FullName()]
			}
			if changed := !bytes.Equal(kb, kw); changed != want {
				t.Fatalf("setting %s changed the key: %v, want %v", last.FullName(), changed, want)
			}
		})
	}
}

// setNonZero gives fd in m a value that is not its zero value.
func setNonZero(t *testing.T, m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	t.Helper()
	var v protoreflect.Value
	switch fd.Kind() {
	case protoreflect.StringKind:
		v = protoreflect.ValueOfString("x")
	case protoreflect.BoolKind:
		v = protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		v = protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		v = protoreflect.ValueOfInt32(1)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		v = protoreflect.ValueOfInt64(1)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		v = protoreflect.ValueOfUint32(1)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		v = protoreflect.ValueOfUint64(1)
	case protoreflect.BytesKind:
		v = protoreflect.ValueOfBytes([]byte("x"))
	case protoreflect.MessageKind:
		if !fd.IsList() {
			v = protoreflect.ValueOfMessage(m.NewField(fd).Message()) // present, empty
		}
	default:
		t.Fatalf("%s: no value for kind %s", fd.FullName(), fd.Kind())
	}
	switch {
	case fd.IsMap():
		t.Fatalf("%s: no value for maps", fd.FullName())
	case fd.IsList():
		if fd.Kind() == protoreflect.MessageKind {
			v = protoreflect.ValueOfMessage(m.Mutable(fd).List().NewElement().Message())
		}
		m.Mutable(fd).List().Append(v)
	default:
		m.Set(fd, v)
	}
}
