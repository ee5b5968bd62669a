package checkjson_test

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// FuzzUnmarshal: whatever the bytes, the fast path reads them only as
// protojson does (go test -fuzz FuzzUnmarshal ./checkjson).
func FuzzUnmarshal(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 40 {
		typ := decoded[i%len(decoded)]
		m := typ.ProtoReflect().New()
		gen{rng: rng, p: 0.5, plain: i%2 == 0}.fill(m, 0)
		if data, err := marshalOptions(rng).Marshal(m.Interface()); err == nil {
			f.Add(data, i%2 == 1)
		}
	}
	f.Add([]byte(`{"action":"read","action":"read"}`), false)
	f.Add([]byte(`{"context":{"time":"2024-01-02T03:04:05.5+01:00"}}`), false)
	f.Fuzz(func(t *testing.T, data []byte, batch bool) {
		typ := proto.Message(&chaperonev1.CheckRequest{})
		if batch {
			typ = &chaperonev1.BatchCheckRequest{}
		}
		checkDecode(t, data, typ)
	})
}

// FuzzAppend: any CheckResponse or BatchCheckResponse (from protobuf
// bytes) is written as protojson writes it, or left to protojson.
func FuzzAppend(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range 40 {
		typ := encoded[i%len(encoded)]
		m := typ.ProtoReflect().New()
		gen{rng: rng, p: 0.6, plain: i%2 == 0}.fill(m, 0)
		if data, err := proto.Marshal(m.Interface()); err == nil {
			f.Add(data, i%2 == 1)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, batch bool) {
		typ := proto.Message(&chaperonev1.CheckResponse{})
		if batch {
			typ = &chaperonev1.BatchCheckResponse{}
		}
		m := typ.ProtoReflect().New().Interface()
		if proto.Unmarshal(data, m) != nil {
			return
		}
		m.ProtoReflect().SetUnknown(nil) // protojson does not write them either
		if checkEncode(t, m) {
			return
		}
		// Declined: only what protojson refuses or a nil element (which
		// protobuf bytes cannot make).
		if _, err := protojson.Marshal(m); err == nil {
			t.Fatalf("declined a response protojson writes: %v", m)
		}
	})
}
