package audit

import (
	"testing"
	"time"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func BenchmarkSeal(b *testing.B) {
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1", ClientId: "portal"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}}},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{Ip: "10.1.2.3", CorrelationId: "c-1"},
	}
	resp := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW, DecisionId: "d-1", BundleRevision: "r1",
		Reasons: []*chaperonev1.Reason{{Code: "POLICY_PERMIT", PolicyId: "clinician-read-clinical-own-org"}}}
	r := newDecision(time.Now().UTC(), "svc-gateway", req, resp)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		r.Seq++
		var err error
		if buf, _, err = appendSealed(buf[:0], &r); err != nil {
			b.Fatal(err)
		}
	}
}
