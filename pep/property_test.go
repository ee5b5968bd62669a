package pep_test

import (
	"encoding/json"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/pep"
)

// maskCases pairs a mask path with the path (in the notation of reaches)
// that must be gone after it.
var maskCases = []struct{ mask, gone string }{
	{"Patient.telecom", "Patient.telecom"},
	{"Patient.name", "Patient.name"},
	{"Patient.name.given", "Patient.name.given"},
	{"Patient.name.family", "Patient.name.family"},
	{"Patient.birthDate", "Patient.birthDate"},
	{"Patient.contact", "Patient.contact"},
	{"Patient.contact.telecom", "Patient.contact.telecom"},
	{"Patient.contact.name.given", "Patient.contact.name.given"},
	{"Patient.extension", "Patient.extension"},
	{"Patient.deceased[x]", "Patient.deceased[x]"},
	{"Observation.value[x]", "Observation.value[x]"},
	{"Observation.valueQuantity", "Observation.value[x]"},
	{"Observation.component.value[x]", "Observation.component.value[x]"},
	{"Observation.component.code", "Observation.component.code"},
	{"Observation.note.text", "Observation.note.text"},
	{"Observation.code", "Observation.code"},
	{"Observation.subject", "Observation.subject"},
}

// probes are the element paths whose presence is compared before and after.
var probes = func() []string {
	var out []string
	for _, c := range maskCases {
		out = append(out, c.gone)
	}
	return out
}()

func genExtension(t *rapid.T, label string) map[string]any {
	return map[string]any{"url": "http://example.org/" + label, "valueString": rapid.StringMatching(`[a-z]{1,6}`).Draw(t, label)}
}

func genPrimitive(t *rapid.T, m map[string]any, name string, v any) {
	if rapid.Bool().Draw(t, name) {
		m[name] = v
	}
	if rapid.Bool().Draw(t, "_"+name) {
		m["_"+name] = map[string]any{"extension": []any{genExtension(t, name)}}
	}
}

func genArray(t *rapid.T, label string, max int, f func() any) []any {
	n := rapid.IntRange(1, max).Draw(t, label+"#")
	out := make([]any, n)
	for i := range out {
		out[i] = f()
	}
	return out
}

func genHumanName(t *rapid.T) map[string]any {
	n := map[string]any{"use": "official"}
	genPrimitive(t, n, "family", "Lee")
	if rapid.Bool().Draw(t, "given") {
		given := genArray(t, "given", 3, func() any { return "G" })
		n["given"] = given
		if rapid.Bool().Draw(t, "_given") {
			sib := make([]any, len(given))
			sib[len(sib)-1] = map[string]any{"extension": []any{genExtension(t, "given")}}
			n["_given"] = sib
		}
	}
	return n
}

func genTelecom(t *rapid.T) any {
	return map[string]any{"system": "phone", "value": rapid.StringMatching(`555-0[0-9]{3}`).Draw(t, "phone")}
}

func genValueX(t *rapid.T, m map[string]any) {
	switch rapid.IntRange(0, 4).Draw(t, "value[x]") {
	case 0:
		m["valueQuantity"] = map[string]any{"value": json.Number("1.50"), "unit": "mg"}
	case 1:
		genPrimitive(t, m, "valueString", "text")
	case 2:
		m["valueBoolean"] = true
	case 3:
		m["valueCodeableConcept"] = map[string]any{"text": "c"}
	}
}

func genResource(t *rapid.T, depth int) map[string]any {
	r := map[string]any{"id": rapid.StringMatching(`[a-z][a-z0-9]{0,5}`).Draw(t, "id")}
	if rapid.Bool().Draw(t, "text") {
		r["text"] = map[string]any{"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
	}
	if rapid.Bool().Draw(t, "labelled") {
		r["meta"] = map[string]any{"security": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
			"code":   rapid.SampledFrom([]string{"N", "R", "V"}).Draw(t, "label"),
		}}}
	}
	if rapid.Bool().Draw(t, "extension") {
		r["extension"] = genArray(t, "extension", 2, func() any { return genExtension(t, "ext") })
	}
	if rapid.Bool().Draw(t, "patient") {
		r["resourceType"] = "Patient"
		if rapid.Bool().Draw(t, "telecom") {
			r["telecom"] = genArray(t, "telecom", 3, func() any { return genTelecom(t) })
		}
		if rapid.Bool().Draw(t, "name") {
			r["name"] = genArray(t, "name", 2, func() any { return genHumanName(t) })
		}
		genPrimitive(t, r, "birthDate", "1970-01-02")
		if rapid.Bool().Draw(t, "deceased") {
			r["deceasedBoolean"] = false
		}
		if rapid.Bool().Draw(t, "contact") {
			r["contact"] = genArray(t, "contact", 2, func() any {
				c := map[string]any{"gender": "female"}
				if rapid.Bool().Draw(t, "cname") {
					c["name"] = genHumanName(t)
				}
				if rapid.Bool().Draw(t, "ctelecom") {
					c["telecom"] = genArray(t, "ctelecom", 2, func() any { return genTelecom(t) })
				}
				return c
			})
		}
	} else {
		r["resourceType"] = "Observation"
		r["status"] = "final"
		if rapid.Bool().Draw(t, "code") {
			r["code"] = map[string]any{"text": "bp"}
		}
		if rapid.Bool().Draw(t, "subject") {
			r["subject"] = map[string]any{"reference": "Patient/p"}
		}
		genValueX(t, r)
		if rapid.Bool().Draw(t, "component") {
			r["component"] = genArray(t, "component", 3, func() any {
				c := map[string]any{"code": map[string]any{"text": "c"}}
				genValueX(t, c)
				return c
			})
		}
		if rapid.Bool().Draw(t, "note") {
			r["note"] = genArray(t, "note", 2, func() any { return map[string]any{"text": "n", "authorString": "a"} })
		}
	}
	if depth < 2 && rapid.Bool().Draw(t, "contained") {
		r["contained"] = genArray(t, "contained", 2, func() any { return genResource(t, depth+1) })
	}
	return r
}

// labelledAnywhere reports a resource at any depth carrying code R.
func labelledAnywhere(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		if meta, ok := v["meta"].(map[string]any); ok {
			for _, c := range meta["security"].([]any) {
				if c.(map[string]any)["code"] == "R" {
					return true
				}
			}
		}
		for _, c := range v {
			if labelledAnywhere(c) {
				return true
			}
		}
	case []any:
		for _, c := range v {
			if labelledAnywhere(c) {
				return true
			}
		}
	}
	return false
}

// TestMaskProperty: for generated Patients and Observations (with contained
// resources, arrays, choice variants and "_" siblings), a masked element is
// never reachable in the output, every element outside the mask is still
// there, and a resource labelled anywhere with a redacted label is
// withheld.
func TestMaskProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		res := genResource(t, 0)
		in, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		c := rapid.SampledFrom(maskCases).Draw(t, "mask")
		ob := masks(c.mask)
		redact := rapid.Bool().Draw(t, "redact")
		if redact {
			ob.RedactLabels = labels("http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R").RedactLabels
		}
		out, withheld, err := pep.Apply(ob, in)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		before := decode(t, in)
		if redact && labelledAnywhere(before) {
			if !withheld || out != nil {
				t.Fatalf("labelled resource released: %s", out)
			}
			return
		}
		if withheld {
			t.Fatalf("withheld without cause: %s", in)
		}
		after := decode(t, out)
		if reaches(after, c.gone) {
			t.Fatalf("%s (mask %s) in output:\nin  %s\nout %s", c.gone, c.mask, in, out)
		}
		for _, p := range probes {
			if strings.HasPrefix(p+".", c.gone+".") {
				continue
			}
			if reaches(before, p) && !reaches(after, p) {
				t.Fatalf("%s lost by mask %s:\nin  %s\nout %s", p, c.mask, in, out)
			}
		}
		if masked := reaches(before, c.gone); masked != (hasRedacted(after.(map[string]any)) == 1) {
			t.Fatalf("masked=%v but REDACTED labels %d: %s", masked, hasRedacted(after.(map[string]any)), out)
		}
		if !reaches(before, c.gone) && string(out) != string(in) {
			t.Fatalf("nothing to mask but output changed:\nin  %s\nout %s", in, out)
		}
	})
}
