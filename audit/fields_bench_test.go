package audit

import (
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/keyset"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// BenchmarkPrepareRecord is what the writer goroutine spends on one
// decision before it is stored: the record made from the messages, its
// identifying fields sealed (fields=on) or not, and its line hashed.
func BenchmarkPrepareRecord(b *testing.B) {
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1", ClientId: "portal"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}}},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{Ip: "10.1.2.3", CorrelationId: "c-1"},
	}
	resp := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW, DecisionId: "d-1", BundleRevision: "r1",
		Reasons: []*chaperonev1.Reason{{Code: "POLICY_PERMIT", PolicyId: "clinician-read-clinical-own-org"}}}
	ks, err := keyset.Generate("k1")
	if err != nil {
		b.Fatal(err)
	}
	fk, err := NewFieldKeys(ks)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	for _, on := range []bool{false, true} {
		name := "fields=off"
		if on {
			name = "fields=on"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			var seq uint64
			for b.Loop() {
				r := newDecision(now, "svc-gateway", req, resp)
				if on {
					fk.Seal(&r)
				}
				seq++
				r.Seq = seq
				if buf, _, err = appendSealed(buf[:0], &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenRecord is what a report spends opening one sealed record.
func BenchmarkOpenRecord(b *testing.B) {
	ks, _ := keyset.Generate("k1")
	fk, _ := NewFieldKeys(ks)
	sealed := Record{Kind: KindDecision, Subject: &Subject{ID: "Practitioner/p1"}, Resource: &Resource{Type: "Observation", ID: "o1", Patient: "Patient/52"}, Context: &Context{IP: "10.1.2.3"}}
	fk.Seal(&sealed)
	b.ReportAllocs()
	for b.Loop() {
		r := sealed
		if err := fk.Open(&r); err != nil {
			b.Fatal(err)
		}
	}
}
