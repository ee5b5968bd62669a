package pep_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/chaperone-pdp/chaperone/pep"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

const patientJSON = `{
  "resourceType": "Patient",
  "id": "p1",
  "meta": {"versionId": "3", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]},
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann Lee, 555-0100</div>"},
  "extension": [{"url": "http://example.org/fhir/StructureDefinition/shoe-size", "valueDecimal": 42.50}],
  "name": [{"family": "Lee", "given": ["Ann", "B."], "_given": [null, {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "IN"}]}]}],
  "telecom": [{"system": "phone", "value": "555-0100"}, {"system": "email", "value": "ann@example.org"}],
  "birthDate": "1970-01-02",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-02T03:04:05Z"}]},
  "contact": [{"name": {"family": "Lee", "given": ["Bo"]}, "telecom": [{"system": "phone", "value": "555-0199"}]}],
  "unknownElement": {"kept": 1.0e2}
}`

const observationJSON = `{
  "resourceType": "Observation",
  "id": "o1",
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">BP 120/80</div>"},
  "contained": [
    {"resourceType": "Patient", "id": "c1", "telecom": [{"system": "phone", "value": "555-0111"}], "name": [{"family": "Kim"}]}
  ],
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
  "subject": {"reference": "#c1"},
  "valueString": "see components",
  "_valueString": {"extension": [{"url": "http://example.org/note", "valueString": "x"}]},
  "component": [
    {"code": {"text": "systolic"}, "valueQuantity": {"value": 120.0, "unit": "mm[Hg]"}},
    {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}},
    {"code": {"text": "note"}, "valueString": "calm", "_valueString": {"id": "n1"}}
  ]
}`

func TestApplyMasks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		in       string
		masks    []string
		gone     []string // paths that must not be reached in the output
		kept     []string // substrings that must remain
		redacted bool     // root marked REDACTED and its text gone
	}{
		{
			name: "top-level array element and its narrative", in: patientJSON,
			masks: []string{"Patient.telecom"}, gone: []string{"Patient.telecom", "Patient.text"},
			kept: []string{`"555-0199"`, `"valueDecimal":42.50`, `"kept":1.0e2`, `"unknownElement"`}, redacted: true,
		},
		{
			name: "primitive with its _ sibling", in: patientJSON,
			masks: []string{"Patient.birthDate"}, gone: []string{"Patient.birthDate"},
			kept: []string{`"telecom"`}, redacted: true,
		},
		{
			name: "primitive array inside a repeating datatype", in: patientJSON,
			masks: []string{"Patient.name.given"}, gone: []string{"Patient.name.given"},
			kept: []string{`"family":"Lee"`, `"Bo"`}, redacted: true,
		},
		{
			name: "nested backbone", in: patientJSON,
			masks: []string{"Patient.contact.telecom"}, gone: []string{"Patient.contact.telecom"},
			kept: []string{`"555-0100"`}, redacted: true,
		},
		{
			name: "emptied backbone is removed", in: patientJSON,
			masks: []string{"Patient.contact.name", "Patient.contact.telecom"}, gone: []string{"Patient.contact"},
			redacted: true,
		},
		{
			name: "every choice variant and _ sibling", in: observationJSON,
			masks: []string{"Observation.value[x]"}, gone: []string{"Observation.value[x]"},
			kept: []string{`"valueQuantity"`}, redacted: true,
		},
		{
			name: "a concrete variant removes every variant", in: observationJSON,
			masks: []string{"Observation.component.valueQuantity"}, gone: []string{"Observation.component.value[x]"},
			kept: []string{`"valueString":"see components"`}, redacted: true,
		},
		{
			name: "contained resource of the masked type", in: observationJSON,
			masks: []string{"Patient.telecom"}, gone: []string{"Patient.telecom"},
			kept: []string{`"valueString":"see components"`, `"Kim"`}, redacted: true,
		},
		{
			name: "mask of another type changes nothing", in: patientJSON,
			masks: []string{"Observation.value[x]"}, kept: []string{`"text"`, `"555-0100"`},
		},
		{
			name:  "escaped member names are the same names",
			in:    `{"resourceType":"Patient","id":"e","tele\u0063om":[{"value":"1"}],"\u005fbirthDate":{"id":"b"},"birthDate":"2000-01-01","gender":"other"}`,
			masks: []string{"Patient.telecom", "Patient.birthDate"}, gone: []string{"Patient.telecom", "Patient.birthDate"},
			kept: []string{`"gender":"other"`}, redacted: true,
		},
		{
			name: "DomainResource path applies to every type", in: observationJSON,
			masks: []string{"DomainResource.text"}, gone: []string{"Observation.text"}, redacted: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, withheld, err := pep.Apply(masks(tc.masks...), []byte(tc.in))
			if err != nil || withheld {
				t.Fatalf("Apply = withheld %v, err %v", withheld, err)
			}
			doc := decode(t, out)
			for _, p := range tc.gone {
				if reaches(doc, p) {
					t.Errorf("%s still in output:\n%s", p, out)
				}
			}
			for _, s := range tc.kept {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("%s lost from output:\n%s", s, out)
				}
			}
			root := doc.(map[string]any)
			if got := hasRedacted(root); got != map[bool]int{true: 1, false: 0}[tc.redacted] {
				t.Errorf("REDACTED labels = %d, want redacted=%v:\n%s", got, tc.redacted, out)
			}
			if _, hasText := root["text"]; hasText == tc.redacted {
				t.Errorf("text present = %v with redacted=%v", hasText, tc.redacted)
			}
			if !tc.redacted && string(out) != tc.in {
				t.Errorf("unmasked resource changed:\n%s", out)
			}
		})
	}
}

func TestApplyKeepsOrderAndNumbers(t *testing.T) {
	t.Parallel()
	in := `{"resourceType":"Observation","id":"o","status":"final","valueQuantity":{"value":1.50,"comparator":"<"},"note":[{"text":"\u00e9\n"}],"issued":"2020-01-01T00:00:00Z"}`
	out, withheld, err := pep.Apply(masks("Observation.note"), []byte(in))
	if err != nil || withheld {
		t.Fatal(withheld, err)
	}
	want := `{"resourceType":"Observation","id":"o","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED","display":"redacted"}]},"status":"final","valueQuantity":{"value":1.50,"comparator":"<"},"issued":"2020-01-01T00:00:00Z"}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// A second masking does not add the label twice.
	again, _, _ := pep.Apply(masks("Observation.issued"), out)
	if n := strings.Count(string(again), "REDACTED"); n != 1 {
		t.Errorf("%d REDACTED labels after two maskings: %s", n, again)
	}
}

func TestApplyLabels(t *testing.T) {
	t.Parallel()
	const conf = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	withLabel := func(sec string) string {
		return `{"resourceType":"Condition","id":"c","meta":{"security":[` + sec + `]},"code":{"text":"x"}}`
	}
	for _, tc := range []struct {
		name     string
		in       string
		ob       *chaperonev1.Obligations
		withheld bool
	}{
		{"system and code match", withLabel(`{"system":"` + conf + `","code":"R"}`), labels(conf + "|R"), true},
		{"other code", withLabel(`{"system":"` + conf + `","code":"N"}`), labels(conf + "|R"), false},
		{"other system", withLabel(`{"system":"http://example.org/x","code":"R"}`), labels(conf + "|R"), false},
		{"label without system matches any system", withLabel(`{"system":"http://example.org/x","code":"R"}`), labels("|R"), true},
		{"coding without system matches", withLabel(`{"code":"R"}`), labels(conf + "|R"), true},
		{"codes are case-sensitive", withLabel(`{"system":"` + conf + `","code":"r"}`), labels(conf + "|R"), false},
		{"second of several labels", withLabel(`{"code":"N","system":"` + conf + `"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}`), labels(conf+"|R", "http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY"), true},
		{"malformed security counts as labelled", `{"resourceType":"Condition","meta":{"security":{"code":"R"}}}`, labels(conf + "|R"), true},
		{"malformed coding counts as labelled", withLabel(`"R"`), labels(conf + "|R"), true},
		{"no meta", `{"resourceType":"Condition","id":"c"}`, labels(conf + "|R"), false},
		{"labelled contained resource withholds the container",
			`{"resourceType":"Observation","contained":[{"resourceType":"Condition","meta":{"security":[{"system":"` + conf + `","code":"R"}]}}],"status":"final"}`,
			labels(conf + "|R"), true},
		{"labelled entry of a Bundle given to Apply",
			`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","meta":{"security":[{"system":"` + conf + `","code":"R"}]}}}]}`,
			labels(conf + "|R"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, withheld, err := pep.Apply(tc.ob, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if withheld != tc.withheld {
				t.Fatalf("withheld = %v, want %v", withheld, tc.withheld)
			}
			if withheld && out != nil {
				t.Errorf("withheld with output %s", out)
			}
			if !withheld && string(out) != tc.in {
				t.Errorf("released changed: %s", out)
			}
		})
	}
}

func TestApplyFailsClosed(t *testing.T) {
	t.Parallel()
	unknown := masks("Patient.telecom")
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	for _, tc := range []struct {
		name    string
		ob      *chaperonev1.Obligations
		in      string
		wantErr error
	}{
		{"typo in a path", masks("Patient.telcom"), patientJSON, nil},
		{"path of no type", masks("Patiant.telecom"), patientJSON, nil},
		{"FHIRPath expression", masks("Patient.telecom.where(system='phone')"), patientJSON, nil},
		{"index", masks("Patient.name[0]"), patientJSON, nil},
		{"empty path", masks(""), patientJSON, nil},
		{"path rooted at a datatype", masks("HumanName.family"), patientJSON, nil},
		{"typo in a path for another type", masks("Observation.valu"), patientJSON, nil},
		{"bare type", masks("Patient"), patientJSON, nil},
		{"bare type, contained", masks("Patient"), observationJSON, nil},
		{"perEntryCheck", &chaperonev1.Obligations{PerEntryCheck: true}, patientJSON, nil},
		{"unknown obligation field", unknown, patientJSON, nil},
		{"label without code", labels("http://example.org|"), patientJSON, nil},
		{"unknown resource type with masks", masks("Patient.telecom"), `{"resourceType":"Patient2","telecom":[]}`, nil},
		{"contained item that is no resource", masks("Patient.telecom"), `{"resourceType":"Observation","contained":[{"id":"x","telecom":[{"value":"1"}]}]}`, nil},
		{"Bundle entry resource that is no resource", masks("Patient.telecom"), `{"resourceType":"Bundle","entry":[{"resource":{"telecom":[{"value":"1"}]}}]}`, nil},
		{"variant of a type no release knows", masks("Observation.value[x]"), `{"resourceType":"Observation","status":"final","valueFuture":{"x":1}}`, nil},
		{"unknown primitive variant, inner choice", masks("Observation.component.value[x]"), `{"resourceType":"Observation","component":[{"_valueFuture":{"id":"x"}}]}`, nil},
		{"meta that cannot be marked", masks("Patient.telecom"), `{"resourceType":"Patient","meta":"x","telecom":[{"value":"1"}]}`, nil},
		{"not JSON", nil, `{"resourceType":`, pep.ErrInvalidJSON},
		{"trailing data", nil, `{"resourceType":"Patient"} {}`, pep.ErrInvalidJSON},
		{"duplicate member", masks("Patient.telecom"), `{"resourceType":"Patient","telecom":[],"telecom":[{"value":"1"}]}`, pep.ErrInvalidJSON},
		{"invalid UTF-8", nil, "{\"resourceType\":\"Patient\",\"x\":\"\xff\"}", pep.ErrInvalidJSON},
		{"no resourceType", nil, `{"id":"x"}`, pep.ErrNotResource},
		{"array", nil, `[]`, pep.ErrNotResource},
		{"too deep", nil, `{"resourceType":"Patient","x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, pep.ErrInvalidJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, withheld, err := pep.Apply(tc.ob, []byte(tc.in))
			if !withheld || out != nil {
				t.Fatalf("released: withheld=%v out=%s", withheld, out)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestApplyHL7Examples runs HL7 R4 example resources (testdata/hl7) through
// masks of their own elements.
func TestApplyHL7Examples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file  string
		masks []string
		gone  []string
	}{
		{"hl7/Patient-example.json", []string{"Patient.name.given", "Patient.birthDate", "Patient.contact.name.family"},
			[]string{"Patient.name.given", "Patient.birthDate", "Patient.contact.name.family"}},
		{"hl7/Patient-infant-twin-1.json", []string{"Patient.birthDate", "Patient.multipleBirth[x]", "Patient.extension"},
			[]string{"Patient.birthDate", "Patient.multipleBirth[x]", "Patient.extension"}},
		{"hl7/Observation-blood-pressure.json", []string{"Observation.component.value[x]", "Observation.interpretation"},
			[]string{"Observation.component.value[x]", "Observation.interpretation"}},
		{"hl7/Observation-1minute-apgar-score.json", []string{"Observation.component.value[x]", "Patient.name", "Patient.birthDate"},
			[]string{"Observation.component.value[x]", "Patient.name", "Patient.birthDate"}},
		{"hl7/MedicationRequest-medrx0301.json", []string{"Medication.code", "MedicationRequest.dosageInstruction.text", "Provenance.signature"},
			[]string{"Medication.code", "MedicationRequest.dosageInstruction.text", "Provenance.signature"}},
		{"hl7/Condition-example.json", []string{"Condition.code", "Condition.bodySite", "Condition.onset[x]"},
			[]string{"Condition.code", "Condition.bodySite", "Condition.onset[x]"}},
		{"hl7/Consent-consent-example-pkb.json", []string{"Consent.provision.provision.actor", "Consent.provision.securityLabel", "Consent.patient"},
			[]string{"Consent.provision.provision.actor", "Consent.provision.securityLabel", "Consent.patient"}},
		{"hl7/Consent-consent-example-signature.json", []string{"Consent.provision.actor.reference", "Consent.performer", "Consent.provision.period"},
			[]string{"Consent.provision.actor.reference", "Consent.performer", "Consent.provision.period"}},
		{"hl7/Consent-consent-example-notThis.json", []string{"Consent.source[x]", "Consent.provision.data.reference"},
			[]string{"Consent.source[x]", "Consent.provision.data.reference"}},
		{"hl7/Bundle-bundle-example.json", []string{"MedicationRequest.subject"}, []string{"MedicationRequest.subject", "MedicationRequest.text"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			in := fixture(t, tc.file)
			before := decode(t, in)
			for _, p := range tc.gone {
				if !reaches(before, p) {
					t.Fatalf("fixture has no %s: the case tests nothing", p)
				}
			}
			out, withheld, err := pep.Apply(masks(tc.masks...), in)
			if err != nil || withheld {
				t.Fatalf("withheld=%v err=%v", withheld, err)
			}
			doc := decode(t, out)
			for _, p := range tc.gone {
				if reaches(doc, p) {
					t.Errorf("%s still in output", p)
				}
			}
			if hasRedacted(doc.(map[string]any)) != 1 {
				t.Errorf("root not marked REDACTED")
			}
		})
	}
}

func TestCheckObligations(t *testing.T) {
	t.Parallel()
	unknown := masks("Patient.telecom")
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	for _, tc := range []struct {
		ob   *chaperonev1.Obligations
		want string // "" for enforceable
	}{
		{nil, ""},
		{masks("Patient.telecom", "Observation.component.value[x]", "Patient", "DomainResource.text"), ""},
		{labels("|R", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V"), ""},
		{&chaperonev1.Obligations{AuditTags: []string{"SENSITIVE"}}, ""},
		{masks("Patient.telecom", "Patient.telcom"), `maskPaths[1] "Patient.telcom"`},
		{masks("HumanName.family"), `maskPaths[0] "HumanName.family"`},
		{masks("Patient.name.where(use='official')"), `maskPaths[0]`},
		{labels("|R", "http://example.org|"), "redactLabels[1]"},
		{&chaperonev1.Obligations{PerEntryCheck: true}, "perEntryCheck"},
		{unknown, "obligations"},
	} {
		err := pep.CheckObligations(tc.ob)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.ob, err)
			}
			continue
		}
		if !errors.Is(err, pep.ErrUnenforceable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want ErrUnenforceable naming %s", tc.ob, err, tc.want)
		}
	}
}
