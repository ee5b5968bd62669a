package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// TestRespeltInputNeverLoosens is the spelling invariant: a valid request
// whose reference, id, code, system, identifier or purpose is respelt (case, leading
// or trailing whitespace, a suffix ?, #, NUL or /, a dropped prefix, a
// Unicode lookalike, an invisible character) is invalid_argument or gets
// the same decision, never a more permissive one: an ALLOW for the respelt
// request needs an ALLOW with the same obligations for the original. Over
// Connect JSON and protobuf and gRPC.
func TestRespeltInputNeverLoosens(t *testing.T) {
	t.Parallel()
	base := startInputServer(t)
	clients := make([]chaperonev1connect.DecisionServiceClient, len(transports))
	for i, tr := range transports {
		clients[i] = chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, tr.opts...)
	}
	ctx := context.Background()
	var respelt, invalid, same, stricter int
	rapid.Check(t, func(t *rapid.T) {
		ti := rapid.IntRange(0, len(transports)-1).Draw(t, "transport")
		client := clients[ti]
		req := validRequest().Draw(t, "request")
		orig, err := decisionOf(ctx, client, req)
		if err != nil {
			t.Fatalf("the valid request %s: %v", describe(req), err)
		}
		fields := respellable(req)
		target := rapid.SampledFrom(fields).Draw(t, "field")
		op := rapid.SampledFrom(respellings).Draw(t, "respelling")
		before := target.get()
		after := op.fn(before)
		if after == before {
			return // this respelling leaves this value as it is
		}
		if target.name == "purposeOfUse" && slices.Contains(purposes, after) {
			return // another purpose (ETREAT without its E is TREAT), not a spelling of this one
		}
		target.set(after)
		respelt++
		got, err := decisionOf(ctx, client, req)
		if err != nil {
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("%s %s %q → %q over %s: %v, want invalid_argument or a decision", target.name, op.name, before, after, transports[ti].name, err)
			}
			invalid++
			return
		}
		if got.GetDecision() == chaperonev1.Decision_DECISION_ALLOW {
			if orig.GetDecision() != chaperonev1.Decision_DECISION_ALLOW || !proto.Equal(orig.GetObligations(), got.GetObligations()) {
				t.Fatalf("%s %s %q → %q over %s loosened the answer: %s became %s\nrespelt request: %s",
					target.name, op.name, before, after, transports[ti].name, describe(orig), describe(got), describe(req))
			}
		}
		if got.GetDecision() == orig.GetDecision() {
			same++
		} else {
			stricter++
		}
	})
	t.Logf("%d respelt requests: %d invalid_argument, %d the same decision, %d stricter", respelt, invalid, same, stricter)
	if invalid == 0 {
		t.Fatal("no respelt request was invalid_argument: the generator does not reach the rules")
	}
}

// purposes are the purposes of use the generated requests carry (TREAT
// twice as often).
var purposes = []string{"TREAT", "TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT"}

// respellings turn a value into another spelling of it.
var respellings = []struct {
	name string
	fn   func(string) string
}{
	{"upper case", strings.ToUpper},
	{"lower case", strings.ToLower},
	{"first letter's case", func(s string) string {
		r, n := utf8.DecodeRuneInString(s)
		if unicode.IsUpper(r) {
			return string(unicode.ToLower(r)) + s[n:]
		}
		return string(unicode.ToUpper(r)) + s[n:]
	}},
	{"leading space", func(s string) string { return " " + s }},
	{"trailing space", func(s string) string { return s + " " }},
	{"trailing tab", func(s string) string { return s + "\t" }},
	{"trailing newline", func(s string) string { return s + "\n" }},
	{"no-break space", func(s string) string { return s + "\u00a0" }},
	{"zero-width space", func(s string) string { return s[:len(s)/2] + "\u200b" + s[len(s)/2:] }},
	{"suffix ?", func(s string) string { return s + "?" }},
	{"suffix #", func(s string) string { return s + "#" }},
	{"suffix NUL", func(s string) string { return s + "\x00" }},
	{"suffix /", func(s string) string { return s + "/" }},
	{"history", func(s string) string { return s + "/_history/1" }},
	{"absolute", func(s string) string { return "https://fhir.example/" + s }},
	{"prefix drop", func(s string) string {
		if i := strings.IndexByte(s, '/'); i >= 0 && i+1 < len(s) && !strings.Contains(s, "://") {
			return s[i+1:]
		}
		_, n := utf8.DecodeRuneInString(s)
		return s[n:]
	}},
	{"lookalike", func(s string) string {
		lookalikes := map[rune]rune{'a': 'а', 'e': 'е', 'o': 'о', 'p': 'р', 'c': 'с', 'x': 'х', 'A': 'А', 'O': 'О', 'P': 'Р', 'T': 'Т', 'E': 'Е', 'H': 'Н',
			'0': '０', '1': '１', '2': '２', '3': '３', '5': '５'}
		for i, r := range s {
			if l, ok := lookalikes[r]; ok {
				return s[:i] + string(l) + s[i+utf8.RuneLen(r):]
			}
		}
		return s
	}},
	{"double slash", func(s string) string { return strings.Replace(s, "/", "//", 1) }},
}

// field is one respellable string field of a request.
type field struct {
	name string
	get  func() string
	set  func(string)
}

// respellable lists the request's non-empty reference, id, code, system
// and purpose fields.
func respellable(r *chaperonev1.CheckRequest) []field {
	var out []field
	add := func(name string, p *string) {
		if *p != "" {
			out = append(out, field{name, func() string { return *p }, func(s string) { *p = s }})
		}
	}
	add("subject.id", &r.Subject.Id)
	add("subject.organization", &r.Subject.Organization)
	add("subject.launchPatient", &r.Subject.LaunchPatient)
	add("resource.type", &r.Resource.Type)
	add("resource.id", &r.Resource.Id)
	add("resource.patient", &r.Resource.Patient)
	add("resource.organization", &r.Resource.Organization)
	add("resource.author", &r.Resource.Author)
	add("purposeOfUse", &r.PurposeOfUse)
	if r.Context != nil {
		add("context.networkZone", &r.Context.NetworkZone)
		add("context.deviceTrust", &r.Context.DeviceTrust)
	}
	for _, ids := range [][]*chaperonev1.Identifier{r.Subject.Identifiers, r.Subject.OrganizationIdentifiers} {
		for _, id := range ids {
			add("identifier.value", &id.Value)
			add("identifier.system", &id.System)
		}
	}
	for _, list := range []struct {
		name string
		cs   []*chaperonev1.Coding
	}{{"resource.securityLabels", r.Resource.SecurityLabels}, {"resource.codes", r.Resource.Codes}, {"resource.categories", r.Resource.Categories}} {
		for _, c := range list.cs {
			add(list.name+".code", &c.Code)
			add(list.name+".system", &c.System)
		}
	}
	return out
}

const (
	actCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

// validRequest draws a valid request over the reference bundle's roles,
// the fixture patients (52 permit, 53 opt-out, 54 delegation), two
// organizations, labels, codes and purposes.
func validRequest() *rapid.Generator[*chaperonev1.CheckRequest] {
	type subject struct {
		id, kind, role, org string
	}
	subjects := []subject{
		{"Practitioner/p1", "practitioner", "clinician", "Organization/o1"},
		{"Practitioner/n1", "practitioner", "nurse", "Organization/o1"},
		{"Practitioner/p2", "practitioner", "clinician", "Organization/o2"},
		{"Practitioner/b1", "practitioner", "billing", "Organization/o1"},
		{"Practitioner/ph1", "practitioner", "pharmacist", "Organization/o1"},
		{"Practitioner/a1", "practitioner", "analyst", "Organization/o1"},
		{"Practitioner/s1", "practitioner", "support", "Organization/o1"},
		{"Patient/52", "patient", "patient", ""},
		{"Patient/53", "patient", "patient", ""},
		{"RelatedPerson/rp1", "related-person", "related-person", ""},
	}
	labels := []*chaperonev1.Coding{
		{System: actCode, Code: "SUD"}, {System: actCode, Code: "HIV"}, {Code: "PSY"},
		{System: confidentiality, Code: "R"}, {System: confidentiality, Code: "N"},
	}
	return rapid.Custom(func(t *rapid.T) *chaperonev1.CheckRequest {
		s := rapid.SampledFrom(subjects).Draw(t, "subject")
		req := &chaperonev1.CheckRequest{
			Subject: &chaperonev1.Subject{Id: s.id, Kind: s.kind, Roles: []string{s.role}, Organization: s.org},
			Action:  rapid.SampledFrom([]string{"read", "read", "search", "create", "update"}).Draw(t, "action"),
			Resource: &chaperonev1.Resource{
				Type:         rapid.SampledFrom([]string{"Observation", "Condition", "Encounter", "Patient"}).Draw(t, "type"),
				Patient:      rapid.SampledFrom([]string{"Patient/52", "Patient/53", "Patient/54", "Patient/52", ""}).Draw(t, "patient"),
				Organization: rapid.SampledFrom([]string{"Organization/o1", "Organization/o1", "Organization/o2", ""}).Draw(t, "organization"),
				Author:       rapid.SampledFrom([]string{"", "Practitioner/p1"}).Draw(t, "author"),
			},
			PurposeOfUse: rapid.SampledFrom(purposes).Draw(t, "purpose"),
		}
		if req.Action != "search" {
			req.Resource.Id = rapid.SampledFrom([]string{"obs1", "e-2.x"}).Draw(t, "id")
		}
		for i, l := range labels {
			if rapid.IntRange(0, 3).Draw(t, "label"+string(rune('0'+i))) == 0 {
				req.Resource.SecurityLabels = append(req.Resource.SecurityLabels, proto.Clone(l).(*chaperonev1.Coding))
			}
		}
		if rapid.Bool().Draw(t, "codes") {
			req.Resource.Codes = []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5"}}
		}
		if rapid.Bool().Draw(t, "categories") {
			req.Resource.Categories = []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "laboratory"}}
		}
		if rapid.Bool().Draw(t, "identifiers") && s.org != "" {
			req.Subject.Identifiers = []*chaperonev1.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}}
			req.Subject.OrganizationIdentifiers = []*chaperonev1.Identifier{{System: "urn:oid:2.16.840.1.113883.4.4", Value: "99"}}
		}
		if rapid.IntRange(0, 3).Draw(t, "scopes") == 0 {
			req.Subject.Scopes = []string{"patient/Observation.rs"}
			req.Subject.LaunchPatient = "Patient/52"
		}
		req.Context = &chaperonev1.Context{
			NetworkZone: rapid.SampledFrom([]string{"clinic", "corporate", "home", ""}).Draw(t, "zone"),
			DeviceTrust: rapid.SampledFrom([]string{"managed", "unmanaged", ""}).Draw(t, "device"),
		}
		if req.PurposeOfUse == "ETREAT" && rapid.Bool().Draw(t, "reason") {
			req.Context.BreakGlassReason = "unconscious patient, checking allergies"
		}
		return req
	})
}
