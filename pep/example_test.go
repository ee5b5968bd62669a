package pep_test

import (
	"encoding/json"
	"fmt"

	"github.com/chaperone-pdp/chaperone/pep"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// A searchset filtered entry by entry: the Decider stands for one
// BatchCheck of the entry resources, in the resource phase.
func ExampleApplyBundle() {
	bundle := []byte(`{"resourceType":"Bundle","type":"searchset","total":2,"entry":[
		{"resource":{"resourceType":"Patient","id":"a","telecom":[{"value":"555-0100"}],"gender":"female"}},
		{"resource":{"resourceType":"Patient","id":"b","gender":"male"}}]}`)
	decide := func(resources []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
		return []*chaperonev1.CheckResponse{
			{Decision: chaperonev1.Decision_DECISION_ALLOW, Obligations: &chaperonev1.Obligations{MaskPaths: []string{"Patient.telecom"}}},
			{Decision: chaperonev1.Decision_DECISION_DENY},
		}, nil
	}
	out, withheld, err := pep.ApplyBundle(bundle, decide)
	fmt.Println(string(out))
	fmt.Println(withheld, err)
	// Output:
	// {"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"a","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED","display":"redacted"}]},"gender":"female"}}]}
	// 1 <nil>
}

func ExampleApply() {
	ob := &chaperonev1.Obligations{MaskPaths: []string{"Patient.telecom"}}
	out, withheld, err := pep.Apply(ob, []byte(`{"resourceType":"Patient","id":"p","telecom":[{"value":"555-0100"}],"gender":"female"}`))
	fmt.Println(string(out), withheld, err)
	// Output: {"resourceType":"Patient","id":"p","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED","display":"redacted"}]},"gender":"female"} false <nil>
}
