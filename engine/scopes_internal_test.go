package engine

import (
	"slices"
	"testing"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestEvaluateScopes(t *testing.T) {
	t.Parallel()
	const lab = "http://terminology.hl7.org/CodeSystem/observation-category"
	tests := []struct {
		name, typ, action string
		scopes            []string
		launch, patient   string
		categories        []*chaperonev1.Coding
		present, allows   bool
		levels            []string
	}{
		{name: "no scopes", typ: "Observation", action: "read"},
		{name: "only identity scopes", typ: "Observation", action: "read", scopes: []string{"openid", "fhirUser", "launch/patient", "offline_access", "email"}},
		{name: "v2 read", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v2 read does not search", typ: "Observation", action: "search", scopes: []string{"user/Observation.r"}, present: true},
		{name: "v2 other type", typ: "Condition", action: "read", scopes: []string{"user/Observation.rs"}, present: true},
		{name: "v2 wildcard type", typ: "Condition", action: "read", scopes: []string{"user/*.r"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v2 write letters", typ: "Observation", action: "update", scopes: []string{"user/Observation.cud"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v2 read cannot delete", typ: "Observation", action: "delete", scopes: []string{"user/Observation.rs"}, present: true},
		{name: "v1 read", typ: "Observation", action: "search", scopes: []string{"user/Observation.read"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v1 read cannot write", typ: "Observation", action: "create", scopes: []string{"user/Observation.read"}, present: true},
		{name: "v1 write", typ: "Observation", action: "patch", scopes: []string{"user/Observation.write"}, present: true, allows: true, levels: []string{"user"}},
		{name: "v1 star", typ: "Patient", action: "delete", scopes: []string{"system/*.*"}, present: true, allows: true, levels: []string{"system"}},
		{name: "export needs r and s", typ: "Patient", action: "export", scopes: []string{"system/*.r"}, present: true},
		{name: "export split across scopes", typ: "Patient", action: "export", scopes: []string{"system/*.r", "system/Patient.s"}, present: true, allows: true, levels: []string{"system"}},

		// Scopes that do not parse grant nothing, and count as present.
		{name: "letters out of order", typ: "Observation", action: "read", scopes: []string{"user/Observation.sr"}, present: true},
		{name: "capitalised level", typ: "Observation", action: "read", scopes: []string{"Patient/Observation.rs"}, present: true},
		{name: "unknown level", typ: "Patient", action: "read", scopes: []string{"admin/Patient.r"}, present: true},
		{name: "lower-case type", typ: "Observation", action: "read", scopes: []string{"user/observation.rs"}, present: true},
		{name: "no such type", typ: "Observation", action: "read", scopes: []string{"user/Observations.rs", "user/Observation.s"}, present: true},
		{name: "no permissions", typ: "Observation", action: "read", scopes: []string{"user/Observation."}, present: true},
		{name: "empty query", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?"}, present: true},
		{name: "bare level word", typ: "Observation", action: "read", scopes: []string{"patient"}, present: true},
		{name: "malformed beside a good scope", typ: "Observation", action: "read", scopes: []string{"user/Observation.sr", "user/Observation.rs"}, present: true, allows: true, levels: []string{"user"}},

		// Queries grant only what the request shows.
		{name: "query shown by category", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?category=" + lab + "|laboratory"},
			categories: []*chaperonev1.Coding{{System: lab, Code: "laboratory"}}, present: true, allows: true, levels: []string{"user"}},
		{name: "query with code only", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?category=laboratory"},
			categories: []*chaperonev1.Coding{{System: lab, Code: "laboratory"}}, present: true, allows: true, levels: []string{"user"}},
		{name: "query of another category", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?category=" + lab + "|laboratory"},
			categories: []*chaperonev1.Coding{{System: lab, Code: "vital-signs"}}, present: true},
		{name: "query of another system", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?category=" + lab + "|laboratory"},
			categories: []*chaperonev1.Coding{{System: "http://example.org", Code: "laboratory"}}, present: true},
		{name: "query not shown", typ: "Observation", action: "search", scopes: []string{"user/Observation.rs?category=" + lab + "|laboratory"}, present: true},
		{name: "query or", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?category=vital-signs,laboratory"},
			categories: []*chaperonev1.Coding{{System: lab, Code: "laboratory"}}, present: true, allows: true, levels: []string{"user"}},
		{name: "query and", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?category=laboratory&code=1234-5"},
			categories: []*chaperonev1.Coding{{System: lab, Code: "laboratory"}}, present: true},
		{name: "query of an unknown parameter", typ: "Observation", action: "read", scopes: []string{"user/Observation.rs?status=final"},
			categories: []*chaperonev1.Coding{{System: lab, Code: "laboratory"}}, present: true},

		// patient/ scopes bind to the launch patient.
		{name: "patient scope without launch patient", typ: "Observation", action: "read", scopes: []string{"patient/Observation.rs"}, patient: "Patient/52", present: true},
		{name: "patient scope of the launch patient", typ: "Observation", action: "read", scopes: []string{"patient/Observation.rs"},
			launch: "Patient/52", patient: "Patient/52", present: true, allows: true, levels: []string{"patient"}},
		{name: "patient scope of another patient", typ: "Observation", action: "read", scopes: []string{"patient/*.rs"},
			launch: "Patient/52", patient: "Patient/53", present: true},
		{name: "patient scope without a patient in the request", typ: "Observation", action: "search", scopes: []string{"patient/*.rs"},
			launch: "Patient/52", present: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &chaperonev1.CheckRequest{
				Subject:  &chaperonev1.Subject{Id: "Practitioner/p1", Scopes: tt.scopes, LaunchPatient: tt.launch},
				Action:   tt.action,
				Resource: &chaperonev1.Resource{Type: tt.typ, Patient: tt.patient, Categories: tt.categories},
			}
			got := evaluateScopes(req)
			if got.present != tt.present || got.allows != tt.allows || !slices.Equal(got.levels, tt.levels) {
				t.Fatalf("got %+v, want present=%v allows=%v levels=%v", got, tt.present, tt.allows, tt.levels)
			}
		})
	}
}

// FuzzScopes: any scope string is parsed without panicking, and a scope
// that grants a request is a well-formed resource scope of the request's
// type (or *), of level patient only for the launch patient's compartment.
func FuzzScopes(f *testing.F) {
	for _, s := range []string{"patient/Observation.rs", "user/*.cruds", "system/Patient.read", "user/Observation.rs?category=laboratory",
		"Patient/Observation.rs", "patient/Observation.sr", "launch/patient", "openid", "user/Observation.rs?", "user/.rs", "/", "?", ""} {
		f.Add(s, "read", "Observation")
	}
	f.Fuzz(func(t *testing.T, scope, action, typ string) {
		req := &chaperonev1.CheckRequest{
			Subject:  &chaperonev1.Subject{Id: "Practitioner/p1", Scopes: []string{scope}, LaunchPatient: "Patient/52"},
			Action:   action,
			Resource: &chaperonev1.Resource{Type: typ, Patient: "Patient/53"},
		}
		got := evaluateScopes(req)
		if !got.allows {
			return
		}
		sc, kind := parseScope(scope)
		switch {
		case kind != scopeResource:
			t.Fatalf("scope %q (kind %d) granted %s on %s", scope, kind, action, typ)
		case sc.typ != "*" && sc.typ != typ:
			t.Fatalf("scope %q granted another type %s", scope, typ)
		case sc.level == "patient":
			t.Fatalf("patient scope %q granted outside the launch patient's compartment", scope)
		}
	})
}
