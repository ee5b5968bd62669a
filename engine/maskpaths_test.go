package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

const maskManifest = "name: masks\nrevision: \"m1\"\n"

// TestMaskPathChecks: every mask path a bundle declares is checked when it
// compiles, with the file, line and column of the path in the error.
func TestMaskPathChecks(t *testing.T) {
	t.Parallel()
	cedarPolicy := func(masks, scope, cond string) string {
		return "// a policy\n@id(\"p\")\n@mask(\"" + masks + "\")\npermit (principal, action, " + scope + ")" + cond + ";\n"
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error, in order; nil: compiles
	}{
		{name: "cedar valid paths", files: map[string]string{"p.cedar": cedarPolicy(
			"Patient.name.given, Patient.contact.name.family,Patient.deceased[x],Patient.deceasedBoolean,Patient.meta.security", "resource is Patient", "")}},
		{name: "cedar choice variant below a choice", files: map[string]string{"p.cedar": cedarPolicy(
			"Observation.valueQuantity.unit,Observation.component.value[x]", "resource is Observation", "")}},
		{name: "cedar content reference", files: map[string]string{"p.cedar": cedarPolicy(
			"Questionnaire.item.item.text", "resource", "")}},
		{name: "cedar R5-only and R4-only elements", files: map[string]string{"p.cedar": cedarPolicy(
			"DeviceUsage.status,Media.content,Encounter.classHistory", "resource", "")}},
		{name: "cedar unknown element", files: map[string]string{"p.cedar": cedarPolicy("Patient.name,Patient.nam", "resource is Patient", "")},
			want: []string{`p.cedar:3:21: mask path "Patient.nam" names no element of Patient`}},
		{name: "cedar unknown nested element", files: map[string]string{"p.cedar": cedarPolicy("Patient.contact.nme.family", "resource is Patient", "")},
			want: []string{`p.cedar:3:8: mask path "Patient.contact.nme.family" names no element of Patient in FHIR R4 or R5 (no element "Patient.contact.nme")`}},
		{name: "cedar choice without [x]", files: map[string]string{"p.cedar": cedarPolicy("Observation.value", "resource is Observation", "")},
			want: []string{`p.cedar:3:8: mask path "Observation.value" names no element`}},
		{name: "cedar below a primitive", files: map[string]string{"p.cedar": cedarPolicy("Patient.birthDate.extension", "resource is Patient", "")},
			want: []string{`names no element`}},
		{name: "cedar datatype is not a resource type", files: map[string]string{"p.cedar": cedarPolicy("HumanName.given", "resource", "")},
			want: []string{`p.cedar:3:8: mask path "HumanName.given": "HumanName" is not a FHIR R4 or R5 resource type`}},
		{name: "cedar lower-case type", files: map[string]string{"p.cedar": cedarPolicy("patient.name", "resource", "")},
			want: []string{`"patient" is not a FHIR R4 or R5 resource type`}},
		{name: "cedar whole resource and every resource", files: map[string]string{"p.cedar": cedarPolicy(
			"Patient,DomainResource.text,Resource.meta.tag", "resource is Patient", "")}},
		{name: "cedar whole resource never permitted", files: map[string]string{"p.cedar": cedarPolicy("Observation", "resource is Patient", "")},
			want: []string{`mask path "Observation": the policy never permits a resource of type Observation`}},
		{name: "cedar abstract type alone", files: map[string]string{"p.cedar": cedarPolicy("DomainResource", "resource", "")},
			want: []string{`"DomainResource" is not a FHIR R4 or R5 resource type`}},
		{name: "cedar unknown element of every resource", files: map[string]string{"p.cedar": cedarPolicy("DomainResource.txt", "resource", "")},
			want: []string{`mask path "DomainResource.txt" names no element of DomainResource`}},
		{name: "cedar type the scope never permits", files: map[string]string{"p.cedar": cedarPolicy("Patient.name,Observation.code", "resource is Patient", "")},
			want: []string{`p.cedar:3:21: mask path "Observation.code": the policy never permits a resource of type Observation (it matches only Patient)`}},
		{name: "cedar type the conditions never permit", files: map[string]string{"p.cedar": cedarPolicy(
			"Encounter.reasonCode,Patient.name", "resource",
			` when { context.purposeOfUse == "TREAT" && ["Encounter", "CarePlan"].contains(resource.type) }`)},
			want: []string{`p.cedar:3:29: mask path "Patient.name": the policy never permits a resource of type Patient (it matches only CarePlan, Encounter)`}},
		{name: "cedar disjunction of types", files: map[string]string{"p.cedar": cedarPolicy(
			"Observation.code,Patient.name,Condition.code", "resource",
			` when { resource is Patient || resource.type == "Observation" }`)},
			want: []string{`mask path "Condition.code": the policy never permits a resource of type Condition (it matches only Observation, Patient)`}},
		{name: "cedar scope and condition meet", files: map[string]string{"p.cedar": cedarPolicy(
			"Patient.name", "resource is Patient", ` when { resource.type == "Observation" }`)},
			want: []string{`the policy never permits a resource of type Patient (it matches only )`}},
		{name: "cedar unless does not constrain", files: map[string]string{"p.cedar": cedarPolicy(
			"Patient.name", "resource", ` unless { resource is Patient }`)}},
		{name: "cedar unconstrained type", files: map[string]string{"p.cedar": cedarPolicy(
			"Condition.code,Patient.name", "resource", ` when { context.purposeOfUse == "TREAT" || resource is Patient }`)}},
		{name: "cedar every bad path of every file", files: map[string]string{
			"a.cedar": cedarPolicy("Patient.nam", "resource", ""),
			"b.cedar": "@id(\"q\")\npermit (principal, action, resource);\n\n@id(\"r\")\n@mask(\"Patient.name,Claim.diagnosiss\")\npermit (principal, action, resource);\n",
		}, want: []string{`a.cedar:3:8: mask path "Patient.nam"`, `b.cedar:5:21: mask path "Claim.diagnosiss"`}},

		{name: "rego literal paths", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if input.action == \"read\"\n\nobligations := {\"maskPaths\": [\"Patient.name\", \"Observation.valueQuantity\"]}\n"}},
		{name: "rego literal bad path", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if input.action == \"read\"\n\nobligations := {\"maskPaths\": [\n\t\"Patient.name\",\n\t\"Patient.nme\",\n]}\n"},
			want: []string{`p.rego:7:2: mask path "Patient.nme" names no element of Patient`}},
		{name: "rego path through a rule and its else", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if input.action == \"read\"\n\nobligations := {\"maskPaths\": masks}\n\nmasks := base if input.resource.type == \"Patient\" else := [\"Observation.cod\"]\n\nbase := {\"Patient.name\", \"Patient.adress\"}\n"},
			want: []string{`p.rego:7:60: mask path "Observation.cod"`, `p.rego:9:26: mask path "Patient.adress"`}},
		{name: "rego type the package never permits", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if {\n\tinput.resource.type == \"Patient\"\n}\n\nobligations := {\"maskPaths\": [\"Patient.name\", \"Observation.code\"]}\n"},
			want: []string{`p.rego:7:47: mask path "Observation.code": the package never permits a resource of type Observation (it permits only Patient)`}},
		{name: "rego types of several permit rules", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if \"Patient\" = input.resource.type\n\npermit contains \"q\" if {\n\tinput.resource.type in {\"Observation\", \"Condition\"}\n\tinput.action == \"read\"\n}\n\nobligations := {\"maskPaths\": [\"Patient.name\", \"Condition.code\", \"Claim.total\"]}\n"},
			want: []string{`mask path "Claim.total": the package never permits a resource of type Claim (it permits only Condition, Observation, Patient)`}},
		{name: "rego one unconstrained permit rule", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if input.resource.type == \"Patient\"\n\npermit contains \"q\" if not input.resource.type == \"Patient\"\n\nobligations := {\"maskPaths\": [\"Claim.total\"]}\n"}},
		{name: "rego computed paths compile", files: map[string]string{"p.rego": "package x\n\npermit contains \"p\" if input.action == \"read\"\n\nobligations := {\"maskPaths\": [sprintf(\"%s.nope\", [input.resource.type])]}\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{"manifest.yaml": {Data: []byte(maskManifest)}}
			for name, src := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(src)}
			}
			_, err := engine.LoadBundle(fsys)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("LoadBundle: %v", err)
				}
				return
			}
			var se *engine.StaticCheckError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *StaticCheckError", err)
			}
			var lines []string
			for _, p := range se.Problems {
				if p.Check != engine.CheckMaskPath {
					t.Errorf("unexpected problem %s", p)
				}
				lines = append(lines, p.String())
			}
			msg := strings.Join(lines, "\n")
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("problems %q lack %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

// TestMaskPathsAtRunTime: a Rego package whose computed mask path names no
// element, or is not a string, fails closed: POLICY_ERROR, no obligations.
func TestMaskPathsAtRunTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		masks string
		allow bool
	}{
		{"valid computed path", `[sprintf("%s.code", [input.resource.type])]`, true},
		{"invalid computed path", `[sprintf("%s.nope", [input.resource.type])]`, false},
		{"computed type never a resource", `[concat(".", ["HumanName", "given"])]`, false},
		{"not a string", `[sprintf("%s.code", [input.resource.type]), 7]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := "package x\n\npermit contains \"p\" if input.action == \"read\"\n\nobligations := {\"maskPaths\": " + tc.masks + "}\n"
			b, err := engine.LoadBundle(fstest.MapFS{
				"manifest.yaml": {Data: []byte(maskManifest)},
				"p.rego":        {Data: []byte(src)},
			})
			if err != nil {
				t.Fatalf("LoadBundle: %v", err)
			}
			e := engine.New(noConsent, engine.WithRequestTime())
			e.Activate(b)
			resp := e.Check(context.Background(), request([]string{"clinician"}, "read", "Observation", "TREAT"))
			allowed := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW
			if allowed != tc.allow {
				t.Fatalf("allow = %v, want %v; reasons %v", allowed, tc.allow, resp.GetReasons())
			}
			if allowed {
				if got := resp.GetObligations().GetMaskPaths(); !slices.Equal(got, []string{"Observation.code"}) {
					t.Errorf("maskPaths = %v", got)
				}
				return
			}
			var codes []string
			for _, r := range resp.GetReasons() {
				codes = append(codes, r.GetCode())
			}
			if !slices.Contains(codes, "POLICY_ERROR") || len(resp.GetObligations().GetMaskPaths()) > 0 {
				t.Errorf("reasons %v, obligations %v; want POLICY_ERROR and no masks", codes, resp.GetObligations())
			}
		})
	}
}
