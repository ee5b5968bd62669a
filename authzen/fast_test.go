package authzen

// Differential tests of the fast paths (fast.go) against the general
// path: generated and mutated inputs, the same result or a fallback. They
// are in the package because the fast paths are not its API.

import (
	"bytes"
	"reflect"
	"slices"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"pgregory.net/rapid"
)

// seeds are values the door reads: properties, context, arrays, strings,
// with the spellings JSON allows.
var seeds = []string{
	`{"roles": ["clinician"], "organization": "Organization/o1"}`,
	`{"purposeOfUse":"TREAT","networkZone":"clinic","deviceTrust":"managed","supported_obligations":["fhir-mask","audit-tags"]}`,
	`{"securityLabels": [{"system": "http://x", "code": "N"}], "date": "2024-01-02T03:04:05Z", "x": {"a": [1, -2.5e3, true, false, null, {}]}}`,
	` { "a\u0041" : "b\"c" , "k" : [ "x" , "y\\z" ] } `,
	`{}`, `[]`, `["a", "b"]`, `[ "a" ]`, `["é", "\u00e9"]`, `"plain"`, `"<&>"`, `"tab\t"`, `""`, `null`, `5`, `[5]`, `["a",]`,
	`{"a":"x","a":"y"}`, "{\"a\":\"\xff\"}", `{"a" "b"}`, `{"a":1}x`,
}

// mutate changes a seed a few bytes at a time.
func mutate(t *rapid.T, s string) []byte {
	b := []byte(s)
	special := []byte("\"\\{}[],: \t\nx0-\xc3\xa9\x00u")
	for range rapid.IntRange(0, 4).Draw(t, "mutations") {
		c := rapid.SampledFrom(special).Draw(t, "byte")
		switch i := rapid.IntRange(0, len(b)).Draw(t, "at"); rapid.IntRange(0, 2).Draw(t, "op") {
		case 0:
			b = slices.Insert(b, i, c)
		case 1:
			if i < len(b) {
				b = slices.Delete(b, i, i+1)
			}
		default:
			if i < len(b) {
				b[i] = c
			}
		}
	}
	return b
}

// fataler is what the checks need of a *testing.T or a *rapid.T.
type fataler interface {
	Fatalf(format string, args ...any)
}

func input(t *rapid.T) []byte {
	return mutate(t, rapid.SampledFrom(seeds).Draw(t, "seed"))
}

// checkMembers: where obj is an object the request decoding lets through,
// plainMembers splits it as jsontext does, or falls back.
func checkMembers(t fataler, obj []byte) {
	if !jsontext.Value(obj).IsValid() || jsontext.Value(obj).Kind() != '{' {
		return
	}
	var buf [4]member
	ms, ok := plainMembers(obj, buf[:])
	if !ok {
		return
	}
	var want []member
	if r := slowMembers(obj, "", func(name string, v jsontext.Value) (bool, *refusal) {
		want = append(want, member{[]byte(name), bytes.Clone(v)}) // v is the decoder's until the next read
		return true, nil
	}); r != nil {
		t.Fatalf("%q: %v", obj, r)
	}
	if len(ms) != len(want) {
		t.Fatalf("%q: %d members, jsontext %d", obj, len(ms), len(want))
	}
	for i := range ms {
		if !bytes.Equal(ms[i].name, want[i].name) || !bytes.Equal(ms[i].value, want[i].value) {
			t.Fatalf("%q: member %d is %q: %q, jsontext %q: %q", obj, i, ms[i].name, ms[i].value, want[i].name, want[i].value)
		}
	}
}

// checkStrings: plainString and plainStrings read a valid value as json
// does, or fall back.
func checkStrings(t fataler, v []byte) {
	if !jsontext.Value(v).IsValid() {
		return
	}
	if s, ok := plainString(v); ok {
		var want string
		if err := json.Unmarshal(v, &want); err != nil || s != want {
			t.Fatalf("%q: %q, json %q (%v)", v, s, want, err)
		}
	}
	if ss, ok := plainStrings(v); ok {
		var want []string
		if err := json.Unmarshal(v, &want); err != nil || !slices.Equal(ss, want) || len(ss) == 0 {
			t.Fatalf("%q: %q, json %q (%v)", v, ss, want, err)
		}
	}
}

func TestPlainMembers(t *testing.T) {
	t.Parallel()
	hits := 0
	for _, s := range seeds {
		checkMembers(t, []byte(s))
		if _, ok := plainMembers([]byte(s), make([]member, 16)); ok {
			hits++
		}
	}
	if hits < 3 {
		t.Fatalf("only %d seeds on the fast path", hits)
	}
	rapid.Check(t, func(t *rapid.T) { checkMembers(t, input(t)) })
	rapid.Check(t, func(t *rapid.T) { checkMembers(t, generated(t)) })
}

func TestPlainStrings(t *testing.T) {
	t.Parallel()
	for _, s := range seeds {
		checkStrings(t, []byte(s))
	}
	if _, ok := plainStrings([]byte(`[ "a" , "b" ]`)); !ok {
		t.Fatal("a plain array not on the fast path")
	}
	rapid.Check(t, func(t *rapid.T) { checkStrings(t, input(t)) })
}

// generated is an object of random members with JSON values of every
// kind, written with random spacing.
func generated(t *rapid.T) []byte {
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rapid.IntRange(0, 6).Draw(t, "kind"); {
		case k == 0:
			return nil
		case k == 1:
			return rapid.Bool().Draw(t, "bool")
		case k == 2:
			return rapid.Float64().Draw(t, "number")
		case k == 3 && depth < 3:
			return rapid.SliceOfN(rapid.Deferred(func() *rapid.Generator[any] {
				return rapid.Custom(func(*rapid.T) any { return value(depth + 1) })
			}), 0, 3).Draw(t, "array")
		case k == 4 && depth < 3:
			m := map[string]any{}
			for range rapid.IntRange(0, 3).Draw(t, "n") {
				m[rapid.String().Draw(t, "key")] = value(depth + 1)
			}
			return m
		default:
			return rapid.String().Draw(t, "string")
		}
	}
	m := map[string]any{}
	for range rapid.IntRange(0, 5).Draw(t, "members") {
		m[rapid.StringMatching(`[A-Za-z_]{1,8}`).Draw(t, "name")] = value(0)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if rapid.Bool().Draw(t, "indent") {
		v := jsontext.Value(b)
		_ = v.Indent()
		b = v
	}
	return b
}

// TestAppendDecision: appendDecision writes what json.Marshal writes, or
// falls back.
func TestAppendDecision(t *testing.T) {
	t.Parallel()
	str := rapid.OneOf(rapid.StringMatching(`[ -~]{0,12}`), rapid.String(), rapid.SampledFrom([]string{"", "POLICY_PERMIT", "a\"b", "<&>", "é"}))
	strs := rapid.OneOf(rapid.Just[[]string](nil), rapid.SliceOfN(str, 0, 3))
	fast := 0
	rapid.Check(t, func(t *rapid.T) {
		d := decisionJSON{Decision: rapid.Bool().Draw(t, "decision")}
		if rapid.IntRange(0, 4).Draw(t, "context") > 0 {
			c := &decisionCtx{
				DecisionID:     str.Draw(t, "id"),
				BundleRevision: str.Draw(t, "revision"),
				Reasons:        strs.Draw(t, "reasons"),
			}
			for range rapid.IntRange(0, 3).Draw(t, "obligations") {
				o := obligationJSON{ID: str.Draw(t, "oid"), Type: str.Draw(t, "type"), Properties: obligationProperties{Paths: strs.Draw(t, "paths"), Tags: strs.Draw(t, "tags")}}
				for range rapid.IntRange(0, 2).Draw(t, "labels") {
					o.Properties.Labels = append(o.Properties.Labels, codingJSON{str.Draw(t, "system"), str.Draw(t, "code")})
				}
				c.Obligations = append(c.Obligations, o)
			}
			if n := rapid.IntRange(0, 3).Draw(t, "admin"); n > 0 {
				c.ReasonAdmin = map[string]string{}
				for range n {
					c.ReasonAdmin[str.Draw(t, "lang")] = str.Draw(t, "message")
				}
			}
			d.Context = c
		}
		checkDecision(t, &d)
		if _, ok := appendDecision(nil, &d); ok {
			fast++
		}
	})
	if fast == 0 {
		t.Fatal("no decision on the fast path")
	}
}

func checkDecision(t fataler, d *decisionJSON) {
	got, ok := appendDecision(nil, d)
	if !ok {
		return
	}
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("%+v: appended %s, json: %v", d, got, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appended %s\njson     %s", got, want)
	}
}

func FuzzPlainMembers(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkMembers(t, b)
		checkStrings(t, b)
	})
}

func FuzzAppendDecision(f *testing.F) {
	f.Add(true, "0193a1f2", "sha256:4f1c", "POLICY_PERMIT", "Observation.note", "en", "")
	f.Add(false, "", "", "UNKNOWN_PROPERTY", "", "en", "context.x: unknown property")
	f.Fuzz(func(t *testing.T, allow bool, id, rev, reason, path, lang, msg string) {
		d := decisionJSON{Decision: allow, Context: &decisionCtx{DecisionID: id, BundleRevision: rev, Reasons: []string{reason},
			Obligations: []obligationJSON{{ID: ObligationMask, Type: path, Properties: obligationProperties{Paths: []string{path}, Labels: []codingJSON{{path, reason}}}}}}}
		if msg != "" {
			d.Context.ReasonAdmin = map[string]string{lang: msg}
		}
		checkDecision(t, &d)
	})
}

// bodies are evaluation requests, plain and not.
var bodies = []string{
	`{"subject": {"type": "practitioner", "id": "p1", "properties": {"roles": ["clinician"], "organization": "Organization/o1"}}, "action": {"name": "read"}, "resource": {"type": "Observation", "id": "o1", "properties": {"patient": "Patient/52"}}, "context": {"purposeOfUse": "TREAT"}}`,
	`{"subject":{"type":"patient","id":"Patient/1","name":"x"},"action":{"name":"read","properties":null},"resource":{"type":"Patient","id":""},"context":null,"extra":[1,{"a":2}]}`,
	`{"subject": null, "action": {"name": null}, "resource": {"type": "Observation", "id": null, "properties": []}, "context": "x"}`,
	`{"Subject": {"Type": "practitioner", "ID": "p1"}, "ACTION": {"name": "r\u0065ad"}, "resource": {"type": 5, "id": true}}`,
	`{"subject": "p1", "action": [], "resource": 5}`,
	` { "subject" : { "type" : "device" , "id" : "d1" , "properties" : { } } , "evaluations" : [ ] } `,
	`{"subject": {"type": "é", "id": "a\"b"}, "action": {"name": "<&>"}}`,
	`{"context": {"purposeOfUse": "TREAT"}, "context": {}}`,
	`[]`, `null`, `{}`, `{"subject": {}}x`,
}

// checkEvaluation: plainEvaluation reads body as json.Unmarshal does, or
// falls back.
func checkEvaluation(t fataler, body []byte) {
	var fast evaluationJSON
	if !plainEvaluation(body, &fast) {
		return
	}
	var slow evaluationJSON
	if err := decode(body, &slow); err != nil {
		t.Fatalf("%q: read, json refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: read as %s, json %s", body, show(&fast), show(&slow))
	}
}

func show(e *evaluationJSON) string {
	b, _ := json.Marshal(e)
	return string(b)
}

func TestPlainEvaluation(t *testing.T) {
	t.Parallel()
	var ev evaluationJSON
	if !plainEvaluation([]byte(bodies[0]), &ev) || !plainEvaluation([]byte(bodies[1]), &ev) {
		t.Fatal("a plain body not on the fast path")
	}
	for _, b := range bodies {
		checkEvaluation(t, []byte(b))
	}
	rapid.Check(t, func(t *rapid.T) {
		checkEvaluation(t, mutate(t, rapid.SampledFrom(bodies).Draw(t, "body")))
	})
	rapid.Check(t, func(t *rapid.T) {
		// Entities of generated members, and members of every kind.
		m := map[string]any{}
		for _, name := range []string{"subject", "action", "resource", "context", "Subject", "x"} {
			switch rapid.IntRange(0, 3).Draw(t, name) {
			case 0:
			case 1:
				m[name] = nil
			case 2:
				m[name] = jsontext.Value(generated(t))
			default:
				e := map[string]any{}
				for _, k := range []string{"type", "id", "name", "properties", "Type", "y"} {
					switch rapid.IntRange(0, 4).Draw(t, k) {
					case 0:
					case 1:
						e[k] = nil
					case 2:
						e[k] = rapid.String().Draw(t, "string")
					case 3:
						e[k] = rapid.StringMatching(`[a-z/0-9]{0,6}`).Draw(t, "plain")
					default:
						e[k] = jsontext.Value(generated(t))
					}
				}
				m[name] = e
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		checkEvaluation(t, b)
	})
}

func FuzzPlainEvaluation(f *testing.F) {
	for _, b := range bodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkEvaluation(t, body) })
}
