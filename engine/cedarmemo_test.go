package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestCedarMemoAnswersAsEvaluation: every request names a resource id
// never seen before, so the decision memo always misses and the layer
// memos (the Cedar layer's, keyed without the id) answer; the engine
// answers each exactly as one that evaluates everything. The other
// fields come from small pools, and neighbours redraw one field, so that
// a key leaving out a field the policies read would collide.
func TestCedarMemoAnswersAsEvaluation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	newEngine := func(opts ...engine.Option) *engine.Engine {
		b, err := engine.LoadBundle(policies.FS)
		if err != nil {
			t.Fatal(err)
		}
		e := engine.New(consentByPatient{}, append([]engine.Option{engine.WithDecisionIDs(func() string { return "id" }), engine.WithRequestTime()}, opts...)...)
		e.Activate(b)
		return e
	}
	memoised, evaluating := newEngine(), newEngine(engine.WithMemo(0))
	rng := rand.New(rand.NewPCG(31, 32))
	base := time.Date(2024, 6, 3, 11, 0, 0, 0, time.UTC)
	fields := []func(r *chaperonev1.CheckRequest){
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Id = pick(rng, "Practitioner/p1", "Practitioner/p2", "Patient/52")
			r.Subject.Kind = pick(rng, "practitioner", "patient")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles = pick(rng, []string{"clinician"}, []string{"nurse"}, []string{"analyst"}, []string{"patient"}, []string{"support"})
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Organization = pick(rng, "Organization/o1", "Organization/o2")
		},
		func(r *chaperonev1.CheckRequest) { r.Action = pick(rng, "read", "search", "update", "operation") },
		func(r *chaperonev1.CheckRequest) {
			r.Resource.Type = pick(rng, "Observation", "Patient", "Condition", "MedicationDispense", "Task")
		},
		func(r *chaperonev1.CheckRequest) { r.Resource.Patient = pick(rng, "Patient/52", "Patient/53", "") },
		func(r *chaperonev1.CheckRequest) {
			r.Resource.Organization = pick(rng, "Organization/o1", "Organization/o2", "")
		},
		func(r *chaperonev1.CheckRequest) { r.Resource.Author = pick(rng, "", "Practitioner/p1") },
		func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = pick(rng, nil,
				[]*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"}},
				[]*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "ETH"}})
		},
		func(r *chaperonev1.CheckRequest) {
			r.Resource.Codes = pick(rng, nil, []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5"}})
		},
		func(r *chaperonev1.CheckRequest) { r.PurposeOfUse = pick(rng, "TREAT", "ETREAT", "HPAYMT", "HRESCH") },
		func(r *chaperonev1.CheckRequest) {
			r.Context.Time = timestamppb.New(base.Add(time.Duration(rng.IntN(14)) * time.Hour))
		},
		func(r *chaperonev1.CheckRequest) { r.Context.BreakGlassReason = pick(rng, "", "patient unconscious") },
		func(r *chaperonev1.CheckRequest) { r.Context.NetworkZone = pick(rng, "", "corporate", "internet") },
		func(r *chaperonev1.CheckRequest) { r.Context.DeviceTrust = pick(rng, "", "managed", "unmanaged") },
		func(r *chaperonev1.CheckRequest) { r.Context.Phase = pick(rng, "", "request") },
	}
	n := 0
	for range 1500 {
		r := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{}, Resource: &chaperonev1.Resource{}, Context: &chaperonev1.Context{}}
		for _, set := range fields {
			set(r)
		}
		reqs := []*chaperonev1.CheckRequest{r}
		for range 5 {
			nb := proto.Clone(r).(*chaperonev1.CheckRequest)
			fields[rng.IntN(len(fields))](nb)
			reqs = append(reqs, nb, proto.Clone(nb).(*chaperonev1.CheckRequest))
		}
		for _, req := range reqs {
			n++
			req.Resource.Id = fmt.Sprintf("r%d", n) // never seen before
			got := memoised.Check(ctx, req)
			want := evaluating.Check(ctx, proto.Clone(req).(*chaperonev1.CheckRequest))
			if !proto.Equal(got, want) {
				t.Fatalf("request %d: memoised engine answered\n%v\nevaluating engine answered\n%v\nfor %v", n, got, want, req)
			}
		}
	}
}
