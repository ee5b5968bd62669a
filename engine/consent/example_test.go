package consent_test

import (
	"fmt"
	"time"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func ExampleEvaluate() {
	c, err := fhirconsent.Parse([]byte(`{
	  "resourceType": "Consent", "id": "boris", "status": "active",
	  "subject": {"reference": "Patient/52"}, "decision": "permit",
	  "provision": [{"securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}]
	}`))
	if err != nil {
		panic(err)
	}
	read := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", SecurityLabels: []*chaperonev1.Coding{{System: fhirconsent.SystemConfidentiality, Code: "V"}}},
		PurposeOfUse: "TREAT",
	}
	q := consent.NewQuery(read, time.Now())
	res := consent.Evaluate(&q, []*fhirconsent.Consent{c}, consent.MostRecent)
	fmt.Println(res.Decision, res.Provisions)

	search := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/1"},
		Action:       "search",
		Resource:     &chaperonev1.Resource{Type: "Observation", Patient: "Patient/52"},
		PurposeOfUse: "TREAT",
	}
	q = consent.NewQuery(search, time.Now())
	res = consent.Evaluate(&q, []*fhirconsent.Consent{c}, consent.MostRecent)
	fmt.Println(res.Decision, res.RedactLabels)
	// Output:
	// DENY [Consent/boris#provision[0]]
	// PERMIT [{http://terminology.hl7.org/CodeSystem/v3-Confidentiality R} {http://terminology.hl7.org/CodeSystem/v3-Confidentiality V}]
}
