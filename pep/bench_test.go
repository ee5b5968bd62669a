package pep_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/pep"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// searchset100 is a 100-entry searchset of the HL7 example Patient and
// blood-pressure Observation, alternating, with distinct ids.
func searchset100(b *testing.B) []byte {
	pat := strings.Replace(string(fixture(b, "hl7/Patient-example.json")), `"id": "example"`, `"id": "ID"`, 1)
	obs := strings.Replace(string(fixture(b, "hl7/Observation-blood-pressure.json")), `"id": "blood-pressure"`, `"id": "ID"`, 1)
	var entries []string
	for i := range 100 {
		id := []string{"p", "mask-", "deny-", "o", "mask-"}[i%5] + string(rune('a'+i%26)) + string(rune('a'+i/26))
		src, typ := pat, "Patient"
		if i%2 == 1 {
			src, typ = obs, "Observation"
		}
		entries = append(entries, `{"fullUrl":"http://fhir.example/`+typ+`/`+id+`","resource":`+strings.Replace(src, `"ID"`, `"`+id+`"`, 1)+`,"search":{"mode":"match"}}`)
	}
	return []byte(searchset(entries...))
}

// BenchmarkApplyBundle masks and filters a 100-entry searchset (about
// 300 KB): 20 entries denied, 40 masked (Patient.telecom,
// Observation.value[x]), 40 released as they are. The Decider only reads
// ids, so the figure is the pep package's own cost.
func BenchmarkApplyBundle(b *testing.B) {
	in := searchset100(b)
	allow := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW}
	deny := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_DENY}
	mask := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW,
		Obligations: masks("Patient.telecom", "Observation.value[x]")}
	decide := func(rs []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
		out := make([]*chaperonev1.CheckResponse, len(rs))
		for i, r := range rs {
			switch {
			case bytes.Contains(r, []byte(`"deny-`)):
				out[i] = deny
			case bytes.Contains(r, []byte(`"mask-`)):
				out[i] = mask
			default:
				out[i] = allow
			}
		}
		return out, nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, in); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		in   []byte
	}{{"entries=100/json=indented", in}, {"entries=100/json=compact", compact.Bytes()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				_, withheld, err := pep.ApplyBundle(bc.in, decide)
				if err != nil || withheld != 20 {
					b.Fatal(withheld, err)
				}
			}
		})
	}
	// The floor of any generic approach: decoding the Bundle into maps
	// and encoding it again with encoding/json, nothing decided or masked.
	b.Run("entries=100/json=indented-roundtrip", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			var v any
			if err := json.Unmarshal(in, &v); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkApply(b *testing.B) {
	in := fixture(b, "hl7/Patient-example.json")
	for _, bc := range []struct {
		name string
		ob   *chaperonev1.Obligations
	}{
		{"obligations=none", nil},
		{"obligations=label", labels("|R")},
		{"obligations=mask", masks("Patient.telecom", "Patient.name.given", "Patient.birthDate")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, withheld, err := pep.Apply(bc.ob, in); err != nil || withheld {
					b.Fatal(withheld, err)
				}
			}
		})
	}
}

// BenchmarkApplySmall is Apply on a small resource, where reading the
// obligations weighs most.
func BenchmarkApplySmall(b *testing.B) {
	in := []byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"bp"},"valueQuantity":{"value":120,"unit":"mm[Hg]"}}`)
	ob := masks("Observation.value[x]", "Observation.note", "Patient.telecom")
	b.ReportAllocs()
	for b.Loop() {
		if _, withheld, err := pep.Apply(ob, in); err != nil || withheld {
			b.Fatal(withheld, err)
		}
	}
}
