package engine_test

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// consentByPatient answers consent from the patient and the purpose, so
// two engines given the same request see the same consent.
type consentByPatient struct{}

func (consentByPatient) EvaluateConsent(_ context.Context, req *chaperonev1.CheckRequest, _ time.Time, _ consent.Rule) (engine.ConsentResult, error) {
	h := fnv.New32a()
	h.Write([]byte(req.GetResource().GetPatient() + req.GetPurposeOfUse()))
	switch h.Sum32() % 3 {
	case 0:
		return engine.ConsentResult{Decision: engine.ConsentPermit, Provisions: []string{"Consent/c1#provision"}}, nil
	case 1:
		return engine.ConsentResult{Decision: engine.ConsentDeny, Provisions: []string{"Consent/c2#provision"}}, nil
	}
	return engine.ConsentResult{Decision: engine.ConsentNoConsent}, nil
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// TestMemoAnswersAsEvaluation: engines with the decision and Rego memos
// answer every request exactly as an engine that evaluates each one, over
// random requests from pools that make both memos hit and miss.
func TestMemoAnswersAsEvaluation(t *testing.T) {
	t.Parallel()
	acc := access.NewMemory()
	ctx := context.Background()
	for _, a := range []access.Agreement{
		{ClientID: "vendor-a", Vendor: "A", Tier: "business-associate", BAASigned: true, Purposes: []string{"TREAT", "HPAYMT"}, ResourceTypes: []string{"Observation"}},
		{ClientID: "vendor-b", Vendor: "B", Tier: "business-associate", BAASigned: false},
	} {
		if _, err := acc.PutAgreement(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	newEngine := func(opts ...engine.Option) *engine.Engine {
		b, err := engine.LoadBundle(policies.FS)
		if err != nil {
			t.Fatal(err)
		}
		e := engine.New(consentByPatient{}, append([]engine.Option{engine.WithGrants(acc), engine.WithAgreements(acc),
			engine.WithDecisionIDs(func() string { return "id" }), engine.WithRequestTime()}, opts...)...)
		e.Activate(b)
		return e
	}
	memoised, evaluating := newEngine(), newEngine(engine.WithMemo(0))

	rng := rand.New(rand.NewPCG(3, 5))
	base := time.Date(2024, 6, 3, 11, 0, 0, 0, time.UTC)
	// Each field of a request, drawn from a pool.
	fields := []func(r *chaperonev1.CheckRequest){
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Id = pick(rng, "Practitioner/p1", "Practitioner/p2", "Patient/52", "RelatedPerson/r1")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Kind = pick(rng, "", "practitioner", "patient", "related-person")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Roles = pick(rng, []string{"clinician"}, []string{"nurse"}, []string{"analyst"}, []string{"support"},
				[]string{"patient"}, []string{"clinician", "analyst"}, nil)
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Organization = pick(rng, "Organization/o1", "Organization/o2", "")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.ClientId = pick(rng, "", "portal", "vendor-a", "vendor-b", "vendor-c")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Subject.Scopes = pick(rng, nil, []string{"user/Observation.rs"}, []string{"patient/*.read"})
		},
		func(r *chaperonev1.CheckRequest) {
			r.Action = pick(rng, "read", "search", "create", "update", "delete", "export")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Resource.Type = pick(rng, "Observation", "Patient", "Condition", "MedicationRequest", "Encounter")
		},
		func(r *chaperonev1.CheckRequest) { r.Resource.Id = pick(rng, "", "r1", "r2", "r3") },
		func(r *chaperonev1.CheckRequest) { r.Resource.Patient = pick(rng, "Patient/52", "Patient/53", "") },
		func(r *chaperonev1.CheckRequest) {
			r.Resource.Organization = pick(rng, "Organization/o1", "Organization/o2", "")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = pick(rng, nil,
				[]*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"}},
				[]*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "ETH"}})
		},
		func(r *chaperonev1.CheckRequest) {
			r.PurposeOfUse = pick(rng, "TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT")
		},
		func(r *chaperonev1.CheckRequest) {
			r.Context.Time = timestamppb.New(base.Add(time.Duration(rng.IntN(14)) * time.Hour))
		},
		func(r *chaperonev1.CheckRequest) {
			r.Context.BreakGlassReason = pick(rng, "", "patient unconscious in the emergency department")
		},
		func(r *chaperonev1.CheckRequest) { r.Context.NetworkZone = pick(rng, "", "corporate", "internet") },
		func(r *chaperonev1.CheckRequest) { r.Context.DeviceTrust = pick(rng, "", "managed", "unmanaged") },
		func(r *chaperonev1.CheckRequest) { r.Context.Ip = pick(rng, "", "10.1.2.3") },
	}
	var reqs []*chaperonev1.CheckRequest
	for range 2500 {
		r := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{}, Resource: &chaperonev1.Resource{}, Context: &chaperonev1.Context{}}
		for _, set := range fields {
			set(r)
		}
		reqs = append(reqs, r)
		// Neighbours: the same request with one field drawn again, so
		// memo keys that leave out a field the policies read collide.
		for range 6 {
			n := proto.Clone(r).(*chaperonev1.CheckRequest)
			fields[rng.IntN(len(fields))](n)
			reqs = append(reqs, n)
		}
	}
	for i, req := range reqs {
		got := memoised.Check(ctx, req)
		want := evaluating.Check(ctx, proto.Clone(req).(*chaperonev1.CheckRequest))
		if !proto.Equal(got, want) {
			t.Fatalf("request %d: memoised engine answered\n%v\nevaluating engine answered\n%v\nfor %v", i, got, want, req)
		}
	}
}
