package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// TestWrongAllowClassesOverEveryProtocol sends the outside probe's base
// request and a variant per wrong-ALLOW class to a server holding the
// reference bundle and its fixture consents, over Connect JSON, Connect
// protobuf and gRPC, and checks each answer is the one the class demands:
// the same over every protocol.
func TestWrongAllowClassesOverEveryProtocol(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := consentstore.NewMemory()
	if _, err := store.Load(ctx, "../policies/fixtures/consents"); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.StoreConsents(store))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	base := serveSplit(t, server.New(eng, v))

	// B: the probe's base request.
	B := func() *chaperonev1.CheckRequest {
		return &chaperonev1.CheckRequest{
			Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
			Action:       "read",
			Resource:     &chaperonev1.Resource{Type: "Observation", Id: "obs1", Patient: "Patient/52", Organization: "Organization/o1"},
			PurposeOfUse: "TREAT",
			Context:      &chaperonev1.Context{Time: timestamppb.Now()},
		}
	}
	with := func(f func(r *chaperonev1.CheckRequest)) *chaperonev1.CheckRequest {
		r := B()
		f(r)
		return r
	}
	type want struct {
		invalid  bool   // invalid_argument, no decision
		allow    bool   //
		code     string // first reason code
		tags     []string
		perEntry bool
	}
	cases := []struct {
		name string
		req  *chaperonev1.CheckRequest
		want want
	}{
		{"base request", B(), want{allow: true, code: "POLICY_PERMIT"}},
		{"1 another tenant under a general permit", with(func(r *chaperonev1.CheckRequest) { r.Subject.Organization = "Organization/o2" }),
			want{code: "TENANT_MISMATCH"}},
		{"1 a one-space break-glass reason", with(func(r *chaperonev1.CheckRequest) {
			r.Subject.Organization, r.PurposeOfUse, r.Context.BreakGlassReason = "Organization/o2", "ETREAT", " "
		}), want{invalid: true}},
		{"1 a referral naming the organization", with(func(r *chaperonev1.CheckRequest) {
			r.Resource.Patient, r.Resource.Organization = "Patient/55", "Organization/o2"
		}), want{allow: true, code: "POLICY_PERMIT", tags: []string{"DISCLOSURE"}}},
		{"2 a deny-only consent and a search of another tenant", with(func(r *chaperonev1.CheckRequest) {
			r.Action, r.Resource.Id, r.Resource.Patient, r.Subject.Organization = "search", "", "Patient/56", "Organization/o2"
		}), want{code: "TENANT_MISMATCH"}},
		{"3 an old decision time", with(func(r *chaperonev1.CheckRequest) {
			r.Context.Time = timestamppb.New(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
		}), want{invalid: true}},
		{"4 no organization", with(func(r *chaperonev1.CheckRequest) { r.Subject.Organization = "" }), want{code: "ORGANIZATION_REQUIRED"}},
		{"5 a respelt patient reference", with(func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "patient/53" }), want{invalid: true}},
		{"5 a reference with a trailing space", with(func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53 " }), want{invalid: true}},
		{"6 a scope that does not parse", with(func(r *chaperonev1.CheckRequest) { r.Subject.Scopes = []string{"patient/Observation.sr"} }),
			want{code: "SCOPE_INSUFFICIENT"}},
		{"6 a patient scope for another patient", with(func(r *chaperonev1.CheckRequest) {
			r.Subject.Scopes, r.Subject.LaunchPatient = []string{"patient/*.rs"}, "Patient/53"
		}), want{code: "SCOPE_INSUFFICIENT"}},
		{"7 a patient claiming the clinician role", with(func(r *chaperonev1.CheckRequest) {
			r.Subject.Id, r.Subject.Kind, r.Subject.Organization = "Patient/51", "patient", ""
		}), want{code: "ROLE_KIND_MISMATCH"}},
		{"9 a lower-case label", with(func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "sud"}}
		}), want{code: "UNKNOWN_SECURITY_LABEL"}},
		{"9 a label with a space", with(func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: " SUD"}}
		}), want{invalid: true}},
		{"12 a search naming no patient", with(func(r *chaperonev1.CheckRequest) { r.Action, r.Resource.Id, r.Resource.Patient = "search", "", "" }),
			want{allow: true, code: "POLICY_PERMIT", perEntry: true}},
		{"care: own organization under a general opt-out", with(func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53" }),
			want{allow: true, code: "POLICY_PERMIT"}},
	}
	protocols := map[string][]connect.ClientOption{
		"connect-json":  {connect.WithProtoJSON()},
		"connect-proto": nil,
		"grpc":          {connect.WithGRPC()},
	}
	for pname, opts := range protocols {
		client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, opts...)
		for _, tc := range cases {
			t.Run(pname+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				resp, err := client.Check(ctx, connect.NewRequest(proto.Clone(tc.req).(*chaperonev1.CheckRequest)))
				if tc.want.invalid {
					if connect.CodeOf(err) != connect.CodeInvalidArgument {
						t.Fatalf("want invalid_argument, got %v %v", resp, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				m := resp.Msg
				if got := m.GetDecision() == chaperonev1.Decision_DECISION_ALLOW; got != tc.want.allow {
					t.Fatalf("allow = %v, want %v: %v", got, tc.want.allow, m)
				}
				if len(m.GetReasons()) == 0 || m.GetReasons()[0].GetCode() != tc.want.code {
					t.Fatalf("reasons %v, want first %s", m.GetReasons(), tc.want.code)
				}
				if tags := m.GetObligations().GetAuditTags(); !slices.Equal(tags, tc.want.tags) && !(len(tags) == 0 && len(tc.want.tags) == 0) {
					t.Errorf("audit tags %v, want %v", tags, tc.want.tags)
				}
				if m.GetObligations().GetPerEntryCheck() != tc.want.perEntry {
					t.Errorf("perEntryCheck = %v, want %v", m.GetObligations().GetPerEntryCheck(), tc.want.perEntry)
				}
			})
		}
	}
}
