package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tricky strings: every escape encoding/json makes, multi-byte runes,
// invalid UTF-8.
var tricky = []string{
	"", "a", "Practitioner/p1", `quote " and \ back`, "<script>&amp;</script>", "tab\tnew\nline\rret",
	"\x00\x01\x1f\x7f", "\b\f", "é日本語🙂", "line\u2028sep\u2029par", "\xff\xfe bad", "half \xe6\x97", "\u00a0nbsp",
}

func randString(rng *rand.Rand) string {
	if rng.IntN(3) == 0 {
		return tricky[rng.IntN(len(tricky))]
	}
	var b []byte
	for range rng.IntN(12) {
		switch rng.IntN(4) {
		case 0:
			b = append(b, byte(rng.IntN(256))) // any byte, valid or not
		case 1:
			b = append(b, tricky[rng.IntN(len(tricky))]...)
		default:
			b = append(b, byte('a'+rng.IntN(26)))
		}
	}
	return string(b)
}

func randStrings(rng *rand.Rand) []string {
	if rng.IntN(3) == 0 {
		return nil
	}
	out := make([]string, rng.IntN(3))
	for i := range out {
		out[i] = randString(rng)
	}
	return out
}

func randCodings(rng *rand.Rand) []Coding {
	if rng.IntN(3) == 0 {
		return nil
	}
	out := make([]Coding, rng.IntN(3))
	for i := range out {
		out[i] = Coding{System: randString(rng), Code: randString(rng)}
	}
	return out
}

func randTime(rng *rand.Rand) time.Time {
	t := time.Unix(rng.Int64N(1<<34), 0).UTC()
	switch rng.IntN(4) {
	case 0:
		return t.Add(time.Duration(rng.IntN(1e9))) // nanoseconds
	case 1:
		return t.Add(time.Duration(rng.IntN(1000)) * time.Millisecond) // trailing zeros trimmed
	case 2:
		return t.In(time.FixedZone("X", 3600)) // a zone: Marshal's path
	}
	return t
}

func randDecision(rng *rand.Rand) Record {
	r := Record{Seq: rng.Uint64(), Prev: randString(rng), Kind: KindDecision, Time: randTime(rng), Caller: randString(rng),
		DecisionID: randString(rng), Action: randString(rng), PurposeOfUse: randString(rng),
		Decision: randString(rng), BundleRevision: randString(rng)}
	if rng.IntN(4) > 0 {
		r.Subject = &Subject{ID: randString(rng), Kind: randString(rng), Roles: randStrings(rng),
			Organization: randString(rng), ClientID: randString(rng), Scopes: randStrings(rng), LaunchPatient: randString(rng)}
		for range rng.IntN(3) {
			r.Subject.Identifiers = append(r.Subject.Identifiers, Identifier{System: randString(rng), Value: randString(rng)})
		}
	}
	if rng.IntN(4) > 0 {
		r.Resource = &Resource{Type: randString(rng), ID: randString(rng), Patient: randString(rng),
			Organization: randString(rng), Labels: randCodings(rng), Author: randString(rng),
			Codes: randCodings(rng), Categories: randCodings(rng), Profiles: randStrings(rng)}
		if rng.IntN(2) == 0 {
			t := randTime(rng)
			r.Resource.Date = &t
		}
	}
	if rng.IntN(4) > 0 {
		r.Context = &Context{IP: randString(rng), NetworkZone: randString(rng),
			CorrelationID: randString(rng), BreakGlassReason: randString(rng), DeviceTrust: randString(rng), Phase: randString(rng)}
		if rng.IntN(2) == 0 {
			t := randTime(rng)
			r.Context.RequestTime = &t
		}
	}
	for range rng.IntN(3) {
		r.Reasons = append(r.Reasons, Reason{Code: randString(rng), PolicyID: randString(rng)})
	}
	if rng.IntN(3) == 0 {
		r.Obligations = &Obligations{MaskPaths: randStrings(rng), RedactLabels: randCodings(rng), AuditTags: randStrings(rng)}
	}
	for range rng.IntN(3) {
		r.Consents = append(r.Consents, ConsentRef{ID: randString(rng), Version: randString(rng)})
	}
	return r
}

// TestAppendRecordMatchesMarshal: the hand-written encoder writes exactly
// what encoding/json writes.
func TestAppendRecordMatchesMarshal(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	recs := []Record{
		{Kind: KindDecision},
		{Kind: KindDecision, Context: &Context{}, Obligations: &Obligations{}, Subject: &Subject{}, Resource: &Resource{}},
		{Kind: KindCheckpoint, Time: time.Unix(0, 0).UTC(), Checkpoint: &Checkpoint{Count: 3, Head: "h", KeyID: "k", Sig: []byte{1, 2}}},
		{Kind: KindDecision, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, // Marshal refuses the year
	}
	for range 20000 {
		recs = append(recs, randDecision(rng))
	}
	for i := range recs {
		want, wantErr := json.Marshal(&recs[i])
		got, err := appendRecord([]byte("prefix"), &recs[i])
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("record %d: err %v, Marshal err %v", i, err, wantErr)
		}
		if err != nil {
			continue
		}
		if !bytes.Equal(got[len("prefix"):], want) || !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// FuzzAppendRecord compares the encoder with encoding/json on fuzzed strings.
func FuzzAppendRecord(f *testing.F) {
	for _, s := range tricky {
		f.Add(s, s, int64(0))
	}
	f.Fuzz(func(t *testing.T, a, b string, nanos int64) {
		tm := time.Unix(0, nanos).UTC()
		r := Record{Kind: KindDecision, Time: tm, Prev: a, Caller: b, DecisionID: b,
			Subject:  &Subject{ID: a, Roles: []string{b, a}},
			Resource: &Resource{Type: b, Labels: []Coding{{System: a, Code: b}}},
			Context:  &Context{RequestTime: &tm, CorrelationID: a},
			Reasons:  []Reason{{Code: a, PolicyID: b}}, Obligations: &Obligations{AuditTags: []string{a}},
			Consents: []ConsentRef{{ID: b, Version: a}}}
		want, wantErr := json.Marshal(&r)
		got, err := appendRecord(nil, &r)
		if (err != nil) != (wantErr != nil) || (err == nil && !bytes.Equal(got, want)) {
			t.Fatalf("got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
		}
	})
}

// marshalOnly are the fields of Record that send a record to encoding/json
// (fastPath is false when one is set). Every other field must be written by
// the hand-written encoder.
var marshalOnly = []string{"Review", "Checkpoint", "Drop", "Change", "Opening", "Prune"}

// fill sets every field of v (a settable value) to a non-zero value derived
// from its path, recursively: nested structs, pointers, slices (two
// elements), maps, times (UTC, with nanoseconds). It fails on a kind it
// does not know, so a new kind of field is noticed.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(time.Date(2026, 11, 30, 12, 34, 56, 789000000+len(path), time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(path + " <&> \"é\"")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(len(path)) + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(len(path)) + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(len(path)) + 0.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), path)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k, path+".key")
		fill(t, e, path+".value")
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				fill(t, v.Field(i), path+"."+f.Name)
			}
		}
	default:
		t.Fatalf("%s: fill does not know kind %s; teach it", path, v.Kind())
	}
}

// leaves lists the paths of every settable leaf field under v (a filled
// value), to zero one at a time.
func leaves(v reflect.Value, path string, out *[]string) {
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
	case v.Kind() == reflect.Pointer && !v.IsNil():
		leaves(v.Elem(), path, out)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8:
		for i := range v.Len() {
			leaves(v.Index(i), path+"["+strconv.Itoa(i)+"]", out)
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				leaves(v.Field(i), path+"."+f.Name, out)
			}
		}
		return
	}
	*out = append(*out, path)
}

// at returns the value at a path made by leaves.
func at(v reflect.Value, path string) reflect.Value {
	for path != "" {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if path[0] == '[' {
			end := strings.IndexByte(path, ']')
			i, _ := strconv.Atoi(path[1:end])
			v, path = v.Index(i), path[end+1:]
			continue
		}
		path = path[1:]
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		v, path = v.FieldByName(path[:end]), path[end:]
	}
	return v
}

// TestEncoderCoversEveryField: with every field of Record set (by
// reflection, so a field added later is set too), and then with each leaf
// zeroed in turn (omitempty), the hand-written encoder writes what
// encoding/json writes; each marshalOnly field alone sends a record to
// Marshal, and no other field does.
func TestEncoderCoversEveryField(t *testing.T) {
	t.Parallel()
	var full Record
	fill(t, reflect.ValueOf(&full).Elem(), "")
	full.Kind = KindDecision
	for _, name := range marshalOnly {
		f := reflect.ValueOf(&full).Elem().FieldByName(name)
		if !f.IsValid() {
			t.Fatalf("marshalOnly names %s, which Record does not have", name)
		}
		f.SetZero()
	}
	if !fastPath(&full) {
		t.Fatal("a record with every field set but the marshalOnly ones does not take the fast path: list the field in marshalOnly or write it in appendRecord")
	}
	check := func(t *testing.T, name string, r *Record) {
		t.Helper()
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		got, err := appendRecord(nil, r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: the encoder differs from encoding/json (a field it does not write?)\n got %s\nwant %s", name, got, want)
		}
	}
	check(t, "every field", &full)
	var paths []string
	leaves(reflect.ValueOf(&full).Elem(), "", &paths)
	if len(paths) < 30 {
		t.Fatalf("only %d leaves: %v", len(paths), paths)
	}
	for _, p := range paths {
		if p == ".Kind" {
			continue
		}
		r := deepCopy(t, &full)
		at(reflect.ValueOf(r).Elem(), p).SetZero()
		check(t, "without "+p, r)
	}
	for _, name := range marshalOnly {
		r := Record{Kind: KindDecision, Time: full.Time}
		fill(t, reflect.ValueOf(&r).Elem().FieldByName(name), "."+name)
		if fastPath(&r) {
			t.Errorf("a decision record with %s set takes the fast path, which does not write it", name)
		}
		check(t, "with "+name, &r)
	}
}

// deepCopy copies a record through JSON, which round-trips every field of
// a Record (the test above would fail otherwise).
func deepCopy(t *testing.T, r *Record) *Record {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out Record
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&out, r) {
		t.Fatalf("a record does not survive a JSON round trip:\n%+v\n%+v", out, *r)
	}
	return &out
}
