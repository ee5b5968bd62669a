package engine_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/chaperone-pdp/chaperone/engine"
)

const staticManifest = "name: s\nrevision: s-1\n"

// TestStaticChecks: each kind of mistake an author makes is refused when
// the bundle compiles, with the file, line and column where it is.
func TestStaticChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		manifest string // default staticManifest
		files    map[string]string
		want     []engine.Problem // Message is a substring of the message
	}{
		{
			name:     "cedar role the manifest does not list",
			manifest: staticManifest + "roles: [clinician, nurse]\n",
			files: map[string]string{"p.cedar": `@id("respelt-role")
permit (principal in Role::"clinician", action, resource)
when {
  // Role::"commented-out" is not checked.
  principal in Role::"nurse" || principal in Role::"clinicain" || principal.kind == "Role::\"x\"" ||
  principal.roles.containsAny(["nurse", "nruse"]) || principal.roles.contains("clinician") };
`},
			want: []engine.Problem{
				{File: "p.cedar", Line: 5, Col: 46, Check: engine.CheckCedarSchema, Message: `Role::"clinicain" is not a role of the manifest (roles: clinician, nurse)`},
				{File: "p.cedar", Line: 6, Col: 41, Check: engine.CheckCedarSchema, Message: `"nruse" is not a role of the manifest`},
			},
		},
		{
			name: "obligation-only policies must be permits with obligations",
			files: map[string]string{"p.cedar": `@id("oo-forbid")
@obligation_only("true")
@audit_tag("SENSITIVE")
forbid (principal, action, resource);

@id("oo-empty")
@obligation_only("true")
permit (principal, action, resource);

@id("oo-consent")
@obligation_only("true")
@overrides_consent("true")
@audit_tag("SENSITIVE")
permit (principal, action, resource);

@id("oo-value")
@obligation_only("yes")
@audit_tag("SENSITIVE")
permit (principal, action, resource);
`},
			want: []engine.Problem{
				{File: "p.cedar", Line: 2, Col: 1, Check: engine.CheckAnnotation, Message: `policy "oo-forbid": @obligation_only: belongs on a permit policy`},
				{File: "p.cedar", Line: 7, Col: 1, Check: engine.CheckAnnotation, Message: `policy "oo-empty": @obligation_only: the policy has no obligations`},
				{File: "p.cedar", Line: 11, Col: 1, Check: engine.CheckAnnotation, Message: `policy "oo-consent": @obligation_only: an obligation-only policy permits nothing, so it cannot override consent`},
				{File: "p.cedar", Line: 17, Col: 1, Check: engine.CheckAnnotation, Message: `policy "oo-value": @obligation_only: "yes": want "true" or "false"`},
			},
		},
		{
			name: "rego obligations_only must be an object of obligations",
			files: map[string]string{"p.rego": `package s

obligations_only := {"auditTag": ["X"]} if input.action == "read"

obligations_only := {} if input.action == "search"

obligations_only := "SENSITIVE" if input.action == "history"
`, "q.rego": `package q

obligations_only contains "SENSITIVE" if input.action == "read"
`},
			want: []engine.Problem{
				{File: "p.rego", Line: 3, Col: 22, Check: engine.CheckAnnotation, Message: `s.obligations_only: unknown key "auditTag"`},
				{File: "p.rego", Line: 5, Col: 21, Check: engine.CheckAnnotation, Message: `s.obligations_only: yields no obligations`},
				{File: "p.rego", Line: 7, Col: 21, Check: engine.CheckAnnotation, Message: `s.obligations_only: must be an object of obligations, not string`},
				{File: "q.rego", Line: 3, Col: 27, Check: engine.CheckAnnotation, Message: `q.obligations_only: must be an object of obligations`},
			},
		},
		{
			name: "cedar unknown context attribute",
			files: map[string]string{"p.cedar": `@id("consent-typo")
permit (principal, action == Action::"read", resource)
when { context.consnet == "PERMIT" };
`},
			want: []engine.Problem{{File: "p.cedar", Line: 3, Col: 16, Check: engine.CheckCedarSchema, Message: "attribute `consnet` in context not found"}},
		},
		{
			name: "cedar unknown principal attribute",
			files: map[string]string{"p.cedar": `@id("role-typo")
permit (principal, action, resource)
when {
  principal.rolez.contains("clinician")
};
`},
			want: []engine.Problem{{File: "p.cedar", Line: 4, Col: 13, Check: engine.CheckCedarSchema, Message: "`rolez`"}},
		},
		{
			name: "cedar unknown resource type",
			files: map[string]string{"p.cedar": `@id("type-typo")
permit (principal, action, resource is Observaton);
`},
			want: []engine.Problem{
				{File: "p.cedar", Line: 1, Col: 1, Check: engine.CheckCedarSchema, Message: "unable to find an applicable action"},
				{File: "p.cedar", Line: 2, Col: 40, Check: engine.CheckCedarSchema, Message: "unrecognized entity type `Observaton`"},
			},
		},
		{
			name: "cedar type mismatch",
			files: map[string]string{"p.cedar": `// office hours
@id("hour-as-string")
permit (principal, action, resource)
when { context.hour < "9" };
`},
			want: []engine.Problem{{File: "p.cedar", Line: 4, Col: 8, Check: engine.CheckCedarSchema, Message: `expected Long but saw String: context.hour < "9"`}},
		},
		{
			name: "cedar type mismatch deep in a condition",
			files: map[string]string{"p.cedar": `@id("nested")
forbid (principal, action, resource)
when {
  principal.roles.contains("billing") &&
  // comments and line breaks do not matter
  !(context.purposeOfUse == "TREAT" ||
    (resource.labels.contains("PSY") &&
     context.breakGlassGrant == "true"))
};
`},
			want: []engine.Problem{{File: "p.cedar", Line: 8, Col: 6, Check: engine.CheckCedarSchema, Message: `context.breakGlassGrant == "true"`}},
		},
		{
			name: "cedar optional attribute without has",
			files: map[string]string{"p.cedar": `@id("ip-unguarded")
permit (principal, action, resource)
when { context.ip.isLoopback() };
`},
			want: []engine.Problem{{File: "p.cedar", Line: 3, Col: 16, Check: engine.CheckCedarSchema, Message: "`ip`"}},
		},
		{
			name:     "rego role the manifest does not list",
			manifest: staticManifest + "roles: [clinician, nurse]\n",
			files: map[string]string{"p.rego": `package s

permit contains "r" if {
	"nurse" in input.subject.roles
	"clinicain" in input.subject.roles
	input.subject.roles[_] == "nruse"
}
`},
			want: []engine.Problem{
				{File: "p.rego", Line: 5, Col: 2, Check: engine.CheckRegoSchema, Message: `"clinicain" is not a role of the manifest (roles: clinician, nurse)`},
				{File: "p.rego", Line: 6, Col: 28, Check: engine.CheckRegoSchema, Message: `"nruse" is not a role of the manifest`},
			},
		},
		{
			name: "rego unknown input key",
			files: map[string]string{"p.rego": `package s

permit contains "role-typo" if {
	"clinician" in input.subject.rolez
}
`},
			want: []engine.Problem{{File: "p.rego", Line: 4, Col: 17, Check: engine.CheckRegoSchema, Message: "undefined ref: input.subject.rolez"}},
		},
		{
			name: "rego type mismatch",
			files: map[string]string{"p.rego": `package s

permit contains "hour-as-string" if {
	input.context.hour == "9"
}
`},
			want: []engine.Problem{{File: "p.rego", Line: 4, Col: 2, Check: engine.CheckRegoSchema, Message: "match error; left: number; right: string"}},
		},
		{
			name: "rego ordering of a number and a string",
			files: map[string]string{"p.rego": `package s

permit contains "after-seven" if {
	input.context.hour >= "7"
}
`},
			want: []engine.Problem{{File: "p.rego", Line: 4, Col: 2, Check: engine.CheckRegoSchema, Message: `input.context.hour >= "7" compares a number with a string`}},
		},
		{
			name: "rego ordering through a variable",
			files: map[string]string{"p.rego": `package s

opening := "07"

permit contains "after-seven" if {
	h := input.context.hour
	h < opening
}
`},
			want: []engine.Problem{{File: "p.rego", Line: 7, Col: 2, Check: engine.CheckRegoSchema, Message: `h < opening compares a number with a string`}},
		},
		{
			name: "cedar reason code not upper snake case",
			files: map[string]string{"p.cedar": `@id("tenant")
@reason("tenant-mismatch")
forbid (principal, action, resource);
`},
			want: []engine.Problem{{File: "p.cedar", Line: 2, Col: 1, Check: engine.CheckReasonCode, Message: `"tenant-mismatch"`}},
		},
		{
			name: "rego reason code not upper snake case",
			files: map[string]string{"p.rego": `package s

deny contains {"id": "vendor", "code": "VendorDenied"} if {
	input.subject.clientId == "x"
}
`},
			want: []engine.Problem{{File: "p.rego", Line: 3, Col: 40, Check: engine.CheckReasonCode, Message: `"VendorDenied"`}},
		},
		{
			name: "duplicate cedar policy id",
			files: map[string]string{"p.cedar": `@id("a")
permit (principal, action, resource);

@id("a")
forbid (principal, action, resource);
`},
			want: []engine.Problem{{File: "p.cedar", Line: 4, Col: 1, Check: engine.CheckPolicyID, Message: `"a" is used twice (also at p.cedar:1:1)`}},
		},
		{
			name: "policy id in cedar and rego",
			files: map[string]string{
				"p.cedar": "@id(\"a\")\npermit (principal, action, resource);\n",
				"p.rego":  "package s\n\npermit contains \"a\" if input.action == \"read\"\n",
			},
			want: []engine.Problem{{File: "p.rego", Line: 3, Check: engine.CheckPolicyID, Message: `"a" is used twice`}},
		},
		{
			name: "unknown annotation",
			files: map[string]string{"p.cedar": `@id("masks")
@obligation("Patient.name")
permit (principal, action, resource);
`},
			want: []engine.Problem{{File: "p.cedar", Line: 2, Col: 1, Check: engine.CheckAnnotation, Message: "@obligation: unknown annotation"}},
		},
		{
			name: "rego keys the engine does not read",
			files: map[string]string{"p.rego": `package s

permit contains {"id": "r", "overridesConsnet": true} if input.action == "read"

obligations := {"maskPath": ["Patient.name"], "auditTags": ["X"]}
`},
			want: []engine.Problem{
				{File: "p.rego", Line: 3, Col: 29, Check: engine.CheckAnnotation, Message: `s.permit: unknown key "overridesConsnet" (known: id, overridesConsent)`},
				{File: "p.rego", Line: 5, Col: 17, Check: engine.CheckAnnotation, Message: `s.obligations: unknown key "maskPath"`},
			},
		},
		{
			name: "annotation on the wrong effect",
			files: map[string]string{"p.cedar": `@id("x")
@overrides_consent("yes")
forbid (principal, action, resource);
`},
			want: []engine.Problem{
				{File: "p.cedar", Line: 2, Col: 1, Check: engine.CheckAnnotation, Message: `"yes": want "true" or "false"`},
				{File: "p.cedar", Line: 2, Col: 1, Check: engine.CheckAnnotation, Message: "belongs on a permit policy"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			manifest := tt.manifest
			if manifest == "" {
				manifest = staticManifest
			}
			fsys := fstest.MapFS{"manifest.yaml": {Data: []byte(manifest)}}
			for name, src := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(src)}
			}
			_, err := engine.LoadBundle(fsys)
			var sce *engine.StaticCheckError
			if !errors.As(err, &sce) {
				t.Fatalf("LoadBundle: %v, want a *StaticCheckError", err)
			}
			if len(sce.Problems) != len(tt.want) {
				t.Fatalf("problems:\n%v\nwant %d", err, len(tt.want))
			}
			for i, w := range tt.want {
				got := sce.Problems[i]
				if got.File != w.File || got.Line != w.Line || got.Col != w.Col || got.Check != w.Check || !strings.Contains(got.Message, w.Message) {
					t.Errorf("problem %d = %s\nwant %s:%d:%d: …%s… (%s)", i, got, w.File, w.Line, w.Col, w.Message, w.Check)
				}
			}
		})
	}
}

// TestStaticChecksPassValidPolicies: what the checks accept still loads,
// including an optional attribute tested with has and every annotation.
func TestStaticChecksPassValidPolicies(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"manifest.yaml": {Data: []byte(staticManifest)},
		"p.cedar": {Data: []byte(`@id("ip-guarded")
@mask("Patient.telecom")
@audit_tag("SENSITIVE")
@redact_label("http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY")
@overrides_consent("false")
permit (principal in Role::"clinician", action in Action::"access", resource is Patient)
when { context has ip && context.ip.isLoopback() && resource has date && resource.date < context.time };

@id("tenant")
@reason("TENANT_MISMATCH")
forbid (principal, action, resource)
unless { principal.organization == resource.organization };
`)},
		"p.rego": {Data: []byte(`package s

permit contains {"id": "r", "overridesConsent": false} if {
	some l in input.resource.securityLabels
	l.code == "PSY"
	input.context.hour >= 7
}

deny contains {"id": "d", "code": "DEVICE_UNTRUSTED"} if input.context.deviceTrust == "unmanaged"
`)},
	}
	if _, err := engine.LoadBundle(fsys); err != nil {
		t.Fatal(err)
	}
}
