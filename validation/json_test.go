package validation_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

func TestUnmarshalJSONNamesUnknownFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, json, field string // field "" means accepted
	}{
		{"valid", `{"subject":{"id":"Practitioner/p1"},"resource":{"type":"Observation"},"purposeOfUse":"TREAT"}`, ""},
		{"proto names", `{"purpose_of_use":"TREAT","resource":{"security_labels":[{"code":"N"}]}}`, ""},
		{"time and struct", `{"context":{"time":"2024-01-01T00:00:00Z","ip":"10.0.0.1"}}`, ""},
		{"top level", `{"purposeOfUse":"TREAT","purposeofuse":"HRESCH"}`, "purposeofuse"},
		{"nested", `{"resource":{"type":"Observation","securityLabel":[{"code":"SUD"}]}}`, "resource.securityLabel"},
		{"list item", `{"resource":{"securityLabels":[{"code":"N"},{"code":"R","display":"restricted"}]}}`, "resource.securityLabels[1].display"},
		{"first in document order", `{"subject":{"scope":["x"]},"zzz":1}`, "subject.scope"},
		{"null value", `{"subject":null,"extra":null}`, "extra"},
		{"escaped name", `{"subject":{"sc\u006fpe":["x"]}}`, "subject.scope"},
		{"batch", `{"requests":[{},{"subject":{"id":"Practitioner/p1","roles":["clinician"],"kind":"practitioner","org":"Organization/o1"}}]}`, "requests[1].subject.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tt.name == "batch" {
				err = validation.UnmarshalJSON([]byte(tt.json), &chaperonev1.BatchCheckRequest{})
			} else {
				err = validation.UnmarshalJSON([]byte(tt.json), &chaperonev1.CheckRequest{})
			}
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var verr *validation.Error
			if !errors.As(err, &verr) || len(verr.Violations) != 1 || verr.Violations[0].Field != tt.field {
				t.Fatalf("UnmarshalJSON = %v, want an unknown field at %s", err, tt.field)
			}
		})
	}
}

// FuzzUnmarshalJSON: UnmarshalJSON accepts exactly what protojson accepts
// with unknown fields refused, and never panics.
func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"subject":{"id":"Practitioner/p1","scope":1}}`, `{"resource":{"securityLabels":[{"cod":"x"}]}}`,
		`{"context":{"time":"2024-01-01T00:00:00Z"}}`, `[1]`, `{"a":`, `{"subject":{"subject":{}}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := validation.UnmarshalJSON([]byte(s), &chaperonev1.CheckRequest{})
		want := protojson.Unmarshal([]byte(s), &chaperonev1.CheckRequest{})
		if (err == nil) != (want == nil) {
			t.Fatalf("UnmarshalJSON(%q) = %v, protojson %v", s, err, want)
		}
		var verr *validation.Error
		if err != nil && !errors.As(err, &verr) {
			t.Fatalf("UnmarshalJSON(%q) = %v, want an *Error", s, err)
		}
	})
}
