package fhirattr_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhirattr"
)

const tenant = "https://chaperone.test/tenant"

func TestExtract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		patients []string
		org      string
		labels   []string
	}{
		{"patient is its own, managing organization", `{"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"Organization/o1"},"link":[{"other":{"reference":"Patient/p2"}}]}`,
			[]string{"Patient/p1"}, "Organization/o1", nil},
		{"tenant tag wins over managingOrganization", `{"resourceType":"Patient","id":"p1","meta":{"tag":[{"system":"` + tenant + `","code":"o2"}]},"managingOrganization":{"reference":"Organization/o1"}}`,
			[]string{"Patient/p1"}, "Organization/o2", nil},
		{"observation subject and performer", `{"resourceType":"Observation","id":"x","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Practitioner/d1"},{"reference":"Patient/p2/_history/3"}],"meta":{"tag":[{"system":"` + tenant + `","code":"Organization/o1"}],"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}}`,
			[]string{"Patient/p1", "Patient/p2"}, "Organization/o1", []string{"HIV"}},
		{"observation about a group", `{"resourceType":"Observation","subject":{"reference":"Group/g1"}}`, nil, "", nil},
		{"care team members", `{"resourceType":"CareTeam","subject":{"reference":"Patient/p1"},"participant":[{"member":{"reference":"Practitioner/d1"}},{"member":{"reference":"Patient/p1"}}]}`,
			[]string{"Patient/p1"}, "", nil},
		{"appointment actors", `{"resourceType":"Appointment","participant":[{"actor":{"reference":"Patient/a"}},{"actor":{"reference":"Patient/b"}}]}`,
			[]string{"Patient/a", "Patient/b"}, "", nil},
		{"practitioner has no patient", `{"resourceType":"Practitioner","id":"d1"}`, nil, "", nil},
		{"display-only reference", `{"resourceType":"Condition","subject":{"display":"someone"}}`, nil, "", nil},
		{"other tag systems ignored", `{"resourceType":"Encounter","subject":{"reference":"Patient/p1"},"meta":{"tag":[{"system":"x","code":"y z"}]}}`, []string{"Patient/p1"}, "", nil},
		{"R5 type: any patient reference", `{"resourceType":"NutritionIntake","subject":{"reference":"Patient/p9"},"contained":[{"resourceType":"Basic","subject":{"reference":"Patient/p8"}}]}`, []string{"Patient/p9"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := fhirattr.Extract([]byte(tc.in), tenant)
			if err != nil {
				t.Fatal(err)
			}
			var labels []string
			for _, l := range a.Labels {
				labels = append(labels, l.GetCode())
			}
			if !slices.Equal(a.Patients, tc.patients) || a.Organization != tc.org || !slices.Equal(labels, tc.labels) {
				t.Errorf("got %v %q %v, want %v %q %v", a.Patients, a.Organization, labels, tc.patients, tc.org, tc.labels)
			}
			rs := a.Resources()
			if want := max(1, len(tc.patients)); len(rs) != want {
				t.Errorf("%d resources, want %d", len(rs), want)
			}
		})
	}
}

func TestExtractRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`[]`,
		`{"resourceType":"Nope"}`,
		`{"resourceType":"Observation","id":"a/b"}`,
		`{"resourceType":"Observation","subject":{"reference":"http://other/fhir/Patient/1"}}`,
		`{"resourceType":"Observation","subject":{"reference":"urn:uuid:5b6e"}}`,
		`{"resourceType":"Observation","subject":{"reference":"#p","type":"Patient"}}`,
		`{"resourceType":"Observation","subject":{"identifier":{"value":"123"}}}`,
		`{"resourceType":"Observation","subject":{"reference":"Patient/1","type":"Group"}}`,
		`{"resourceType":"Observation","subject":{"reference":"Patient?identifier=1"}}`,
		`{"resourceType":"Observation","subject":{"reference":7}}`,
		`{"resourceType":"Observation","meta":{"security":[{"system":"s"}]}}`,
		`{"resourceType":"Observation","meta":{"security":{"code":"R"}}}`,
		`{"resourceType":"Observation","meta":{"tag":[{"system":"` + tenant + `","code":"o1"},{"system":"` + tenant + `","code":"o2"}]}}`,
		`{"resourceType":"Patient","id":"p","managingOrganization":{"reference":"Practitioner/x"}}`,
	} {
		if _, err := fhirattr.Extract([]byte(in), tenant); !errors.Is(err, fhirattr.ErrAttributes) {
			t.Errorf("%s: err %v, want ErrAttributes", in, err)
		}
	}
}
