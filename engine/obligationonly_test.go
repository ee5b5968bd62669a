package engine_test

import (
	"context"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func withHIV(r *chaperonev1.CheckRequest) *chaperonev1.CheckRequest {
	r.Resource.SecurityLabels = append(r.Resource.SecurityLabels, &chaperonev1.Coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "HIV"})
	return r
}

// TestObligationOnly: an obligation-only policy adds its obligations to an
// ALLOW that another policy makes (in either language), and nothing to a
// DENY; it never permits by itself.
func TestObligationOnly(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/obligationonly")
	e := engine.New(noConsent, engine.WithRequestTime())
	e.Activate(b)
	tests := []struct {
		name   string
		req    *chaperonev1.CheckRequest
		allow  bool
		tags   []string
		masks  []string
		redact []string
	}{
		{name: "a doctor reads HIV data: the tags join", req: withHIV(request([]string{"doctor"}, "read", "Observation", "TREAT")),
			allow: true, tags: []string{"SENSITIVE", "NOREDISCLOSE", "REGO_SEEN"}, masks: []string{"Resource.meta"}, redact: []string{"PSY"}},
		{name: "a doctor reads unlabelled data", req: request([]string{"doctor"}, "read", "Condition", "TREAT"),
			allow: true, masks: []string{"Resource.meta"}},
		{name: "a Rego permit gets the Cedar obligation-only tags", req: withHIV(request([]string{"doctor"}, "search", "Condition", "TREAT")),
			allow: true, tags: []string{"SENSITIVE", "NOREDISCLOSE"}, masks: []string{"Resource.meta"}},
		{name: "obligation-only policies alone permit nothing", req: withHIV(request([]string{"clerk"}, "read", "Observation", "TREAT"))},
		{name: "a forbid leaves no obligations", req: withHIV(request([]string{"doctor", "nurse"}, "read", "Observation", "TREAT"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := e.Check(context.Background(), tt.req)
			o := resp.GetObligations()
			var redact []string
			for _, l := range o.GetRedactLabels() {
				redact = append(redact, l.GetCode())
			}
			if (resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW) != tt.allow || !slices.Equal(o.GetAuditTags(), tt.tags) ||
				!slices.Equal(o.GetMaskPaths(), tt.masks) || !slices.Equal(redact, tt.redact) {
				t.Fatalf("got %v %v tags %q masks %q redact %q; want allow=%v %q %q %q", resp.GetDecision(), resp.GetReasons(),
					o.GetAuditTags(), o.GetMaskPaths(), redact, tt.allow, tt.tags, tt.masks, tt.redact)
			}
			for _, r := range resp.GetReasons() {
				if r.GetPolicyId() == "tag-sensitive" || r.GetPolicyId() == "mask-everything" {
					t.Errorf("an obligation-only policy is a reason: %v", resp.GetReasons())
				}
			}
		})
	}
	_, trace := e.Explain(context.Background(), withHIV(request([]string{"doctor"}, "read", "Observation", "TREAT")))
	if got := trace.Layers[0].ObligationOnly; !slices.Contains(got, "tag-sensitive") || !slices.Contains(got, "mask-everything") {
		t.Errorf("trace %+v does not name the obligation-only policies", trace.Layers)
	}
}

// TestObligationOnlyNeverPermits: over generated requests, a bundle of
// obligation-only policies (and forbids) never allows; adding them to a
// bundle changes no decision, only the obligations of its ALLOWs.
func TestObligationOnlyNeverPermits(t *testing.T) {
	t.Parallel()
	only := loadTestBundle(t, "testdata/obligationonly-alone")
	with := loadTestBundle(t, "testdata/obligationonly")
	without := loadTestBundle(t, "testdata/obligationonly-without")
	eOnly, eWith, eWithout := engine.New(noConsent, engine.WithMemo(0)), engine.New(noConsent, engine.WithMemo(0)), engine.New(noConsent, engine.WithMemo(0))
	eOnly.Activate(only)
	eWith.Activate(with)
	eWithout.Activate(without)
	rapid.Check(t, func(rt *rapid.T) {
		roles := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"doctor", "nurse", "clerk", "admin"}), 0, 3, rapid.ID[string]).Draw(rt, "roles")
		action := rapid.SampledFrom([]string{"read", "vread", "search", "history", "create", "update", "delete", "export"}).Draw(rt, "action")
		typ := rapid.SampledFrom([]string{"Observation", "Condition", "Patient", "Appointment"}).Draw(rt, "type")
		req := request(roles, action, typ, rapid.SampledFrom([]string{"TREAT", "HPAYMT", ""}).Draw(rt, "purpose"))
		req.Context = nil
		if rapid.Bool().Draw(rt, "hiv") {
			withHIV(req)
		}
		if rapid.Bool().Draw(rt, "noPatient") {
			req.Resource.Patient = ""
		}
		ctx := context.Background()
		if r := eOnly.Check(ctx, req); r.GetDecision() == chaperonev1.Decision_DECISION_ALLOW {
			rt.Fatalf("obligation-only policies allowed %v: %v", req, r.GetReasons())
		}
		a, b := eWith.Check(ctx, req), eWithout.Check(ctx, req)
		if a.GetDecision() != b.GetDecision() {
			rt.Fatalf("obligation-only policies changed the decision of %v: %v vs %v", req, a.GetReasons(), b.GetReasons())
		}
		if a.GetDecision() != chaperonev1.Decision_DECISION_ALLOW && len(a.GetObligations().GetAuditTags())+len(a.GetObligations().GetMaskPaths()) > 0 {
			rt.Fatalf("a DENY carries obligations: %v", a.GetObligations())
		}
	})
}
