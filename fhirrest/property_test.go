package fhirrest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/fhirrest"
)

// mappedCases are the interaction cases without a body (a body is only
// read by POST _search, and those cases are covered elsewhere).
func mappedCases() []mapCase {
	var out []mapCase
	for _, tc := range interactionCases {
		if tc.body == "" {
			out = append(out, tc)
		}
	}
	return out
}

// A respelt path is invalid input, never another request: percent-encoding
// any one byte after the base, or lower-casing the first letter of a type,
// is refused.
func TestRespeltPathRefused(t *testing.T) {
	t.Parallel()
	m := newMapper(t)
	cases := mappedCases()
	rapid.Check(t, func(t *rapid.T) {
		tc := rapid.SampledFrom(cases).Draw(t, "case")
		rest := strings.TrimPrefix(tc.path, "/fhir")
		if len(rest) < 2 {
			t.Skip("no byte after the base")
		}
		i := rapid.IntRange(1, len(rest)-1).Draw(t, "byte")
		var path string
		if rapid.Bool().Draw(t, "lower-case") {
			if c := rest[i]; c < 'A' || c > 'Z' || rest[i-1] != '/' {
				t.Skip("not the first letter of a segment")
			}
			path = "/fhir" + rest[:i] + strings.ToLower(rest[i:i+1]) + rest[i+1:]
			if got, err := m.Map(tc.method, path, tc.query, nil); err == nil {
				t.Fatalf("%s %s mapped to %+v", tc.method, path, got)
			}
			return
		}
		path = "/fhir" + rest[:i] + fmt.Sprintf("%%%02X", rest[i]) + rest[i+1:]
		_, err := m.Map(tc.method, path, tc.query, nil)
		if !errors.Is(err, fhirrest.ErrEncodedPath) && !errors.Is(err, fhirrest.ErrEncodedSlash) &&
			!errors.Is(err, fhirrest.ErrEncodedDot) {
			t.Fatalf("%s %s: %v, want an encoding refusal", tc.method, path, err)
		}
	})
}

// extraParams are parameters a client may add to a request, harmless and
// hostile.
var extraParams = []string{
	"_format=json", "_summary=true", "_elements=id", "_count=5", "code=x", "status:not=final",
	"patient=p1", "patient=p2", "patient=Patient/p1", "subject=Patient/p2", "subject=Group/g1",
	"subject:Patient=p1", "patient:missing=true", "subject:identifier=a|b", "patient=p1,p2",
	"_id=p1", "_id=p9", "_has:Observation:patient:code=x", "subject.name=x", "subject:Patient.name=x",
	"_include=*", "_include=Observation:subject", "_revinclude=Provenance:target",
	"_include:iterate=Observation:subject", "_filter=x", "_query=q", "_type=Patient",
	"_typeFilter=Observation%3Fcode%3Dx", "x%2Ey=1", "patient=Patient%252Fp1", "_h%61s:x:y:z=1",
}

// Adding a parameter never widens what a request is mapped to: the result
// is a refusal, or the same interaction, type and id with per-entry checks
// not cleared and the patient unchanged or newly bound.
func TestAddedParameterNeverWidens(t *testing.T) {
	t.Parallel()
	m := newMapper(t)
	cases := mappedCases()
	rapid.Check(t, func(t *rapid.T) {
		tc := rapid.SampledFrom(cases).Draw(t, "case")
		before, err := m.Map(tc.method, tc.path, tc.query, nil)
		if err != nil {
			t.Fatalf("case %q: %v", tc.name, err)
		}
		q := tc.query
		for _, p := range rapid.SliceOfN(rapid.SampledFrom(extraParams), 1, 3).Draw(t, "params") {
			if q != "" {
				q += "&"
			}
			q += p
		}
		after, err := m.Map(tc.method, tc.path, q, nil)
		if err != nil {
			return
		}
		checkMappedRapid(t, before, after)
	})
}

func checkMappedRapid(t *rapid.T, before, after fhirrest.Mapped) {
	if after.Action != before.Action || after.Type != before.Type || after.ID != before.ID || after.Operation != before.Operation {
		t.Fatalf("%+v became %+v", before, after)
	}
	if before.PerEntryCheck && !after.PerEntryCheck {
		t.Fatalf("per-entry checks cleared: %+v became %+v", before, after)
	}
	if before.Patient != "" && after.Patient != before.Patient {
		t.Fatalf("patient changed: %+v became %+v", before, after)
	}
}
