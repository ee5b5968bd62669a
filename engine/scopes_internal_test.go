package engine

import (
	"slices"
	"testing"
)

func TestEvaluateScopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, action string
		scopes            []string
		present, allows   bool
		levels            []string
	}{
		{name: "no scopes", typ: "Observation", action: "read"},
		{name: "only identity scopes", typ: "Observation", action: "read", scopes: []string{"openid", "fhirUser", "launch/patient", "offline_access"}},
		{name: "v2 read", typ: "Observation", action: "read", scopes: []string{"patient/Observation.rs"}, present: true, allows: true, levels: []string{"patient"}},
		{name: "v2 read does not search", typ: "Observation", action: "search", scopes: []string{"patient/Observation.r"}, present: true},
		{name: "v2 other type", typ: "Condition", action: "read", scopes: []string{"user/Observation.rs"}, present: true},
		{name: "v2 wildcard type", typ: "Condition", action: "read", scopes: []string{"user/*.r"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v2 write letters", typ: "Observation", action: "update", scopes: []string{"user/Observation.cud"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v2 read cannot delete", typ: "Observation", action: "delete", scopes: []string{"user/Observation.rs"}, present: true},
		{name: "v2 query restriction kept", typ: "Observation", action: "search", scopes: []string{"patient/Observation.rs?category=laboratory"}, present: true, allows: true, levels: []string{"patient"}},
		{name: "v2 letters out of order are invalid", typ: "Observation", action: "read", scopes: []string{"patient/Observation.sr"}},
		{name: "v1 read", typ: "Observation", action: "search", scopes: []string{"patient/Observation.read"}, present: true, allows: true, levels: []string{"patient"}},
		{name: "v1 read cannot write", typ: "Observation", action: "create", scopes: []string{"patient/Observation.read"}, present: true},
		{name: "v1 write", typ: "Observation", action: "patch", scopes: []string{"user/Observation.write"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v1 star", typ: "Patient", action: "delete", scopes: []string{"system/*.*"}, present: true, allows: true, levels: []string{"system"}},
		{name: "export needs r and s", typ: "Patient", action: "export", scopes: []string{"system/*.r"}, present: true},
		{name: "export split across scopes", typ: "Patient", action: "export", scopes: []string{"system/*.r", "system/Patient.s"}, present: true, allows: true, levels: []string{"system"}},
		{name: "unknown level ignored", typ: "Patient", action: "read", scopes: []string{"admin/Patient.r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := evaluateScopes(tt.scopes, tt.typ, tt.action)
			if got.present != tt.present || got.allows != tt.allows || !slices.Equal(got.levels, tt.levels) {
				t.Fatalf("got %+v, want present=%v allows=%v levels=%v", got, tt.present, tt.allows, tt.levels)
			}
		})
	}
}
