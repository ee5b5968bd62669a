package validation_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

func baseRequest() *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1"},
		Action: "read",
		Resource: &chaperonev1.Resource{Type: "Observation", Id: "obs1", Patient: "Patient/52", Organization: "Organization/o1",
			SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "SUD"}}},
		PurposeOfUse: "TREAT",
	}
}

// refFields are the reference fields of a CheckRequest: JSON path, setter,
// and whether empty is allowed.
var refFields = []struct {
	path     string
	set      func(*chaperonev1.CheckRequest, string)
	optional bool
}{
	{"subject.id", func(r *chaperonev1.CheckRequest, s string) { r.Subject.Id = s }, false},
	{"subject.organization", func(r *chaperonev1.CheckRequest, s string) { r.Subject.Organization = s }, true},
	{"subject.launchPatient", func(r *chaperonev1.CheckRequest, s string) { r.Subject.LaunchPatient = s }, true},
	{"resource.patient", func(r *chaperonev1.CheckRequest, s string) { r.Resource.Patient = s }, true},
	{"resource.organization", func(r *chaperonev1.CheckRequest, s string) { r.Resource.Organization = s }, true},
	{"resource.author", func(r *chaperonev1.CheckRequest, s string) { r.Resource.Author = s }, true},
}

func TestReferenceGrammar(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ref   string
		valid bool
	}{
		{"Patient/53", true},
		{"Organization/o1", true},
		{"RelatedPerson/rp-1.2", true},
		{"Patient/" + strings.Repeat("a", 64), true},
		{"Patient/" + strings.Repeat("a", 65), false},
		{"Patient/53 ", false},
		{" Patient/53", false},
		{"patient/53", false},
		{"PATIENT/53", true}, // the grammar allows it; it names no other patient
		{"Patient/53?", false},
		{"Patient/53#", false},
		{"Patient/53\x00", false},
		{"Patient/53/", false},
		{"Patient/53\n", false},
		{"Patient/53/_history/1", false},
		{"http://fhir.example/Patient/53", false},
		{"52", false},
		{"/52", false},
		{"Patient/", false},
		{"P/53", false},
		{"Patient//53", false},
		{"Patient/5 3", false},
		{"Patient/5_3", false},
		{"Pаtient/53", false}, // Cyrillic a
		{"Patient/５３", false}, // full-width digits
		{"urn:uuid:0b4f2a3e-7c9d-4c8e-9b5a-1f2e3d4c5b6a", false},
	}
	for _, f := range refFields {
		for _, c := range cases {
			t.Run(f.path+"="+c.ref, func(t *testing.T) {
				t.Parallel()
				req := baseRequest()
				f.set(req, c.ref)
				checkField(t, v, req, f.path, c.valid)
			})
		}
		t.Run(f.path+"=empty", func(t *testing.T) {
			t.Parallel()
			req := baseRequest()
			f.set(req, "")
			checkField(t, v, req, f.path, f.optional)
		})
	}
}

func TestCodingAndIDAndReasonRules(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	label := func(sys, code string) func(*chaperonev1.CheckRequest) {
		return func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = []*chaperonev1.Coding{{System: "", Code: "R"}, {System: sys, Code: code}}
		}
	}
	cases := []struct {
		name  string
		edit  func(*chaperonev1.CheckRequest)
		field string
		valid bool
	}{
		{"label SUD", label("", "SUD"), "resource.securityLabels[1].code", true},
		{"label sud (a code, the manifest decides)", label("", "sud"), "resource.securityLabels[1].code", true},
		{"label leading space", label("", " SUD"), "resource.securityLabels[1].code", false},
		{"label trailing space", label("", "SUD "), "resource.securityLabels[1].code", false},
		{"label inner space", label("", "S UD"), "resource.securityLabels[1].code", false},
		{"label tab", label("", "SUD\t"), "resource.securityLabels[1].code", false},
		{"label nbsp", label("", "SUD\u00a0"), "resource.securityLabels[1].code", false},
		{"label zero-width space", label("", "S\u200bUD"), "resource.securityLabels[1].code", false},
		{"label NUL", label("", "SUD\x00"), "resource.securityLabels[1].code", false},
		{"label system space", label("http://terminology.hl7.org/CodeSystem/v3-ActCode ", "SUD"), "resource.securityLabels[1].system", false},
		{"label system inner space", label("http://x y", "SUD"), "resource.securityLabels[1].system", false},
		{"code space", func(r *chaperonev1.CheckRequest) {
			r.Resource.Codes = []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5 "}}
		}, "resource.codes[0].code", false},
		{"category space", func(r *chaperonev1.CheckRequest) {
			r.Resource.Categories = []*chaperonev1.Coding{{Code: "laboratory"}, {Code: " laboratory"}}
		}, "resource.categories[1].code", false},
		{"category system newline", func(r *chaperonev1.CheckRequest) {
			r.Resource.Categories = []*chaperonev1.Coding{{System: "http://x\n", Code: "laboratory"}}
		}, "resource.categories[0].system", false},
		{"resource id empty (a search)", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "" }, "resource.id", true},
		{"resource id space", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "obs1 " }, "resource.id", false},
		{"resource id reference", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "Observation/obs1" }, "resource.id", false},
		{"resource id 65", func(r *chaperonev1.CheckRequest) { r.Resource.Id = strings.Repeat("a", 65) }, "resource.id", false},
		{"reason empty", reason(""), "context.breakGlassReason", true},
		{"reason one space", reason(" "), "context.breakGlassReason", false},
		{"reason 19", reason(strings.Repeat("x", 19)), "context.breakGlassReason", false},
		{"reason 20", reason(strings.Repeat("x", 20)), "context.breakGlassReason", true},
		{"reason 19 spread by spaces", reason(" a b c d e f g h i j k l m n o p q r s "), "context.breakGlassReason", false},
		{"reason 20 spread by spaces", reason(" a b c d e f g h i j k l m n o p q r s t "), "context.breakGlassReason", true},
		{"reason 19 and nbsp", reason(strings.Repeat("x", 19) + "\u00a0\u2003"), "context.breakGlassReason", false},
		{"reason sentence", reason("unconscious patient, checking allergies"), "context.breakGlassReason", true},
		{"reason with newline", reason("unconscious patient,\nchecking allergies"), "context.breakGlassReason", true},
		{"reason with NULs", reason(strings.Repeat("\x00", 25)), "context.breakGlassReason", false},
		{"reason in another script", reason("пациент без сознания, аллергии"), "context.breakGlassReason", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req := baseRequest()
			c.edit(req)
			checkField(t, v, req, c.field, c.valid)
		})
	}
}

func reason(s string) func(*chaperonev1.CheckRequest) {
	return func(r *chaperonev1.CheckRequest) { r.Context = &chaperonev1.Context{BreakGlassReason: s} }
}

// TestServiceReferences: the references of the consent and access
// services keep the same grammar.
func TestServiceReferences(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	const reason = "unconscious patient, checking allergies"
	cases := []struct {
		name  string
		msg   proto.Message
		field string
		valid bool
	}{
		{"consent list", &chaperonev1.ConsentServiceListRequest{Patient: "Patient/53"}, "patient", true},
		{"consent list lower", &chaperonev1.ConsentServiceListRequest{Patient: "patient/53"}, "patient", false},
		{"consent list bare", &chaperonev1.ConsentServiceListRequest{Patient: "53"}, "patient", false},
		{"grant", &chaperonev1.AccessServiceGrantBreakGlassRequest{Subject: "Practitioner/p1", Patient: "Patient/53", Reason: reason}, "patient", true},
		{"grant patient space", &chaperonev1.AccessServiceGrantBreakGlassRequest{Subject: "Practitioner/p1", Patient: "Patient/53 ", Reason: reason}, "patient", false},
		{"grant subject bare", &chaperonev1.AccessServiceGrantBreakGlassRequest{Subject: "p1", Patient: "Patient/53", Reason: reason}, "subject", false},
		{"grant list patient", &chaperonev1.AccessServiceListBreakGlassRequest{Patient: "Patient/53"}, "patient", true},
		{"grant list subject only", &chaperonev1.AccessServiceListBreakGlassRequest{Subject: "Practitioner/p1"}, "subject", true},
		{"grant list patient query", &chaperonev1.AccessServiceListBreakGlassRequest{Patient: "Patient/53?"}, "patient", false},
		{"grant list subject NUL", &chaperonev1.AccessServiceListBreakGlassRequest{Subject: "Practitioner/p1\x00"}, "subject", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkField(t, v, c.msg, c.field, c.valid)
		})
	}
}

func checkField(t *testing.T, v *validation.Validator, msg proto.Message, field string, valid bool) {
	t.Helper()
	err := v.Validate(msg)
	if valid {
		if err != nil {
			t.Fatalf("Validate = %v, want valid", err)
		}
		return
	}
	var verr *validation.Error
	if !errors.As(err, &verr) {
		t.Fatalf("Validate = %v, want a violation of %s", err, field)
	}
	for _, viol := range verr.Violations {
		if viol.Field == field {
			return
		}
	}
	t.Fatalf("Validate = %v, want a violation naming %s", err, field)
}
