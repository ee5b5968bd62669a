package validation_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
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
// the resource type the field must name ("" for any) and whether empty is
// allowed.
var refFields = []struct {
	path     string
	set      func(*chaperonev1.CheckRequest, string)
	typ      string
	optional bool
}{
	{"subject.id", func(r *chaperonev1.CheckRequest, s string) { r.Subject.Id = s }, "", false},
	{"subject.organization", func(r *chaperonev1.CheckRequest, s string) { r.Subject.Organization = s }, "Organization", true},
	{"subject.launchPatient", func(r *chaperonev1.CheckRequest, s string) { r.Subject.LaunchPatient = s }, "Patient", true},
	{"resource.patient", func(r *chaperonev1.CheckRequest, s string) { r.Resource.Patient = s }, "Patient", true},
	{"resource.organization", func(r *chaperonev1.CheckRequest, s string) { r.Resource.Organization = s }, "Organization", true},
	{"resource.author", func(r *chaperonev1.CheckRequest, s string) { r.Resource.Author = s }, "", true},
}

func TestReferenceGrammar(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	// ids after a valid type; T stands for the field's type.
	ids := []struct {
		id    string
		valid bool
	}{
		{"53", true},
		{"o1", true},
		{"rp-1.2", true},
		{"A.b-C", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"53 ", false},
		{" 53", false},
		{"53?", false},
		{"53#", false},
		{"53\x00", false},
		{"53/", false},
		{"53\n", false},
		{"53/_history/1", false},
		{"", false},
		{"/53", false},
		{"5 3", false},
		{"5_3", false},
		{"５３", false}, // full-width digits
		{"5%33", false},
	}
	// spellings of the whole reference; T is the field's type.
	spellings := []struct {
		ref   string
		valid bool
	}{
		{"T/53", true},
		{"t/53", false},
		{"T/53/", false},
		{"http://fhir.example/T/53", false},
		{"urn:uuid:0b4f2a3e-7c9d-4c8e-9b5a-1f2e3d4c5b6a", false},
		{"53", false},
		{"/53", false},
		{"T53", false},
		{"T//53", false},
		{" T/53", false},
	}
	for _, f := range refFields {
		typ := f.typ
		if typ == "" {
			typ = "Practitioner"
		}
		try := func(ref string, valid bool) {
			t.Run(f.path+"="+ref, func(t *testing.T) {
				t.Parallel()
				req := baseRequest()
				f.set(req, ref)
				checkField(t, v, req, f.path, valid)
			})
		}
		for _, c := range ids {
			try(typ+"/"+c.id, c.valid)
		}
		for _, c := range spellings {
			try(strings.ReplaceAll(c.ref, "T", typ), c.valid)
		}
		try(strings.ToUpper(typ)+"/53", false)
		try(strings.ToLower(typ)+"/53", false)
		try(strings.Replace(typ, "a", "\u0430", 1)+"/53", false) // Cyrillic a
		try(typ[:1]+strings.ToUpper(typ[1:2])+typ[2:]+"/53", false)
		for _, other := range []string{"Patient", "Organization", "RelatedPerson", "PractitionerRole", "Device"} {
			try(other+"/53", f.typ == "" || f.typ == other)
		}
		try("", f.optional)
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
		{"identifier value space", func(r *chaperonev1.CheckRequest) {
			r.Subject.Identifiers = []*chaperonev1.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: " 1234567893"}}
		}, "subject.identifiers[0].value", false},
		{"identifier value inner space", func(r *chaperonev1.CheckRequest) {
			r.Subject.OrganizationIdentifiers = []*chaperonev1.Identifier{{Value: "99"}, {Value: "9 9"}}
		}, "subject.organizationIdentifiers[1].value", false},
		{"identifier system space", func(r *chaperonev1.CheckRequest) {
			r.Subject.Identifiers = []*chaperonev1.Identifier{{System: "urn:oid:1.2 ", Value: "1"}}
		}, "subject.identifiers[0].system", false},
		{"identifier", func(r *chaperonev1.CheckRequest) {
			r.Subject.Identifiers = []*chaperonev1.Identifier{{System: "urn:oid:1.2", Value: "A-1"}}
		}, "subject.identifiers[0].value", true},
		{"resource id empty (a search)", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "" }, "resource.id", true},
		{"resource id space", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "obs1 " }, "resource.id", false},
		{"resource id reference", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "Observation/obs1" }, "resource.id", false},
		{"resource id 65", func(r *chaperonev1.CheckRequest) { r.Resource.Id = strings.Repeat("a", 65) }, "resource.id", false},
		{"device trust", ctx(func(c *chaperonev1.Context) { c.DeviceTrust = "unmanaged" }), "context.deviceTrust", true},
		{"device trust capital", ctx(func(c *chaperonev1.Context) { c.DeviceTrust = "Unmanaged" }), "context.deviceTrust", false},
		{"device trust space", ctx(func(c *chaperonev1.Context) { c.DeviceTrust = "unmanaged " }), "context.deviceTrust", false},
		{"network zone", ctx(func(c *chaperonev1.Context) { c.NetworkZone = "clinic" }), "context.networkZone", true},
		{"network zone NUL", ctx(func(c *chaperonev1.Context) { c.NetworkZone = "corporate\x00" }), "context.networkZone", false},
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

func ctx(edit func(*chaperonev1.Context)) func(*chaperonev1.CheckRequest) {
	return func(r *chaperonev1.CheckRequest) {
		r.Context = &chaperonev1.Context{}
		edit(r.Context)
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

// TestConsentParserAgrees: the consent parser's reference check and the
// API's reference pattern accept the same strings, so a stored consent
// and a request meet in one spelling.
func TestConsentParserAgrees(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	alphabet := []string{"P", "a", "t", "i", "e", "n", "R", "/", "5", "3", ".", "-", "_", " ", "?", "#", "\x00", "é", "а", "Z", "z", "A"}
	corpus := []string{"Patient/53", "RelatedPerson/rp-1", "PractitionerRole/x.y", "PATIENT/53", "Patient/" + strings.Repeat("9", 64),
		"Patient/" + strings.Repeat("9", 65), "Pa/1", "P/1", "Patient//1", "Patient/1/"}
	for range 3000 {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		corpus = append(corpus, b.String())
	}
	for _, ref := range corpus {
		req := baseRequest()
		req.Subject.Id = ref
		api := v.Validate(req) == nil
		if parser := fhirconsent.LiteralReference(ref); parser != api {
			t.Errorf("%q: the consent parser says %t, the API's pattern %t", ref, parser, api)
		}
	}
}
