package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
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
	r := Record{Seq: rng.Uint64(), Prev: randString(rng), Kind: KindDecision, Time: randTime(rng),
		DecisionID: randString(rng), Action: randString(rng), PurposeOfUse: randString(rng),
		Decision: randString(rng), BundleRevision: randString(rng)}
	if rng.IntN(4) > 0 {
		r.Subject = &Subject{ID: randString(rng), Kind: randString(rng), Roles: randStrings(rng),
			Organization: randString(rng), ClientID: randString(rng)}
	}
	if rng.IntN(4) > 0 {
		r.Resource = &Resource{Type: randString(rng), ID: randString(rng), Patient: randString(rng),
			Organization: randString(rng), Labels: randCodings(rng)}
	}
	if rng.IntN(4) > 0 {
		r.Context = &Context{IP: randString(rng), NetworkZone: randString(rng),
			CorrelationID: randString(rng), BreakGlassReason: randString(rng)}
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
		r := Record{Kind: KindDecision, Time: tm, Prev: a, DecisionID: b,
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
