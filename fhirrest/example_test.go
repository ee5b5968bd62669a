package fhirrest_test

import (
	"errors"
	"fmt"

	"github.com/chaperone-pdp/chaperone/fhirrest"
)

func Example() {
	m, err := fhirrest.New("/fhir")
	if err != nil {
		panic(err)
	}
	got, err := m.Map("GET", "/fhir/Patient/52/Observation", "code=8867-4", nil)
	fmt.Println(got.Action, got.Type, got.Patient, got.PerEntryCheck, err)

	got, err = m.Map("GET", "/fhir/Observation/o1/_history/2", "", nil)
	fmt.Println(got.Action, got.Type, got.ID, got.VersionID, err)

	got, err = m.Map("GET", "/fhir/Observation", "subject=Group/g1", nil)
	fmt.Println(got.Action, got.Type, got.Patient == "", got.PerEntryCheck, err)
	// Output:
	// search Observation Patient/52 false <nil>
	// vread Observation o1 2 <nil>
	// search Observation true true <nil>
}

func ExampleMapper_Map_refused() {
	m, _ := fhirrest.New("/fhir")
	for _, r := range []struct{ path, query string }{
		{"/fhir/Observation/o1%2F..%2FPatient", ""},
		{"/fhir/Patient", "_has:Observation:patient:code=1234"},
		{"/fhir/Patient/52/Observation", "patient=53"},
	} {
		_, err := m.Map("GET", r.path, r.query, nil)
		var refused *fhirrest.RefusedError
		if errors.As(err, &refused) {
			fmt.Println(refused.Reason)
		}
	}
	// Output:
	// ENCODED_SLASH
	// REVERSE_CHAIN
	// PATIENT_CONFLICT
}

func ExampleMapper_MapAll() {
	m, _ := fhirrest.New("/fhir")
	body := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	  {"request":{"method":"GET","url":"Patient/52"}},
	  {"resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Observation"}}]}`)
	all, err := m.MapAll("POST", "/fhir", "", body)
	for _, one := range all {
		fmt.Printf("%s %s id=%q patient=%q\n", one.Action, one.Type, one.ID, one.Patient)
	}
	fmt.Println(err)
	_, err = m.MapAll("POST", "/fhir", "", nil)
	fmt.Println(errors.Is(err, fhirrest.ErrBodyRequired))
	// Output:
	// read Patient id="52" patient="Patient/52"
	// create Observation id="" patient=""
	// <nil>
	// true
}
