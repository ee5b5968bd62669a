package engine_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// consentAnswer is a consent layer with a fixed answer, to test how the
// engine combines consent with policies.
type consentAnswer struct {
	result engine.ConsentResult
	err    error
}

func (c consentAnswer) EvaluateConsent(context.Context, *chaperonev1.CheckRequest, time.Time, consent.Rule) (engine.ConsentResult, error) {
	return c.result, c.err
}

var (
	noConsent     = consentAnswer{result: engine.ConsentResult{Decision: engine.ConsentNoConsent}}
	consentDenies = consentAnswer{result: engine.ConsentResult{Decision: engine.ConsentDeny, Provisions: []string{"Consent/c1#provision"}}}
	consentOK     = consentAnswer{result: engine.ConsentResult{Decision: engine.ConsentPermit, Provisions: []string{"Consent/c1#provision"}}}
)

func loadTestBundle(t testing.TB, dir string) *engine.Bundle {
	t.Helper()
	b, err := engine.LoadBundle(os.DirFS(dir))
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return b
}

func request(roles []string, action, typ, purpose string) *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: roles, Organization: "Organization/o1"},
		Action:       action,
		Resource:     &chaperonev1.Resource{Type: typ, Id: "r1", Patient: "Patient/52", Organization: "Organization/o1"},
		PurposeOfUse: purpose,
		Context:      &chaperonev1.Context{Time: timestamppb.New(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC))},
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/basic")
	withLabel := func(r *chaperonev1.CheckRequest, code string) *chaperonev1.CheckRequest {
		r.Resource.SecurityLabels = append(r.Resource.SecurityLabels, &chaperonev1.Coding{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: code})
		return r
	}
	at := func(r *chaperonev1.CheckRequest, hour int) *chaperonev1.CheckRequest {
		r.Context.Time = timestamppb.New(time.Date(2024, 6, 1, hour, 0, 0, 0, time.UTC))
		return r
	}
	breakGlass := func(r *chaperonev1.CheckRequest) *chaperonev1.CheckRequest {
		r.Context.BreakGlassReason = "patient unconscious in the emergency department"
		return r
	}
	tests := []struct {
		name      string
		consents  engine.ConsentEvaluator
		req       *chaperonev1.CheckRequest
		allow     bool
		codes     []string
		policies  []string
		masks     []string
		tags      []string
		redact    []string
		noPatient bool
	}{
		{name: "cedar permit with obligations", consents: noConsent, req: request([]string{"clinician"}, "read", "Observation", "TREAT"),
			allow: true, codes: []string{"POLICY_PERMIT"}, policies: []string{"clinician-read"}, masks: []string{"Observation.note"}, tags: []string{"CLINICAL"}},
		{name: "action group covers search", consents: noConsent, req: request([]string{"clinician"}, "search", "Observation", "TREAT"),
			allow: true, codes: []string{"POLICY_PERMIT"}},
		{name: "action group excludes writes", consents: noConsent, req: request([]string{"clinician"}, "update", "Observation", "TREAT"),
			codes: []string{"NO_PERMIT"}},
		{name: "wrong purpose is no permit", consents: noConsent, req: request([]string{"clinician"}, "read", "Observation", "HPAYMT"),
			codes: []string{"NO_PERMIT"}},
		{name: "unknown resource type is no permit", consents: noConsent, req: request([]string{"clinician"}, "read", "Basic", "TREAT"),
			codes: []string{"NO_PERMIT"}},
		{name: "no roles is no permit", consents: noConsent, req: request(nil, "read", "Observation", "TREAT"),
			codes: []string{"NO_PERMIT"}},
		{name: "forbid overrides permit with its reason code", consents: noConsent,
			req:   withLabel(request([]string{"nurse"}, "read", "Observation", "TREAT"), "R"),
			codes: []string{"RESTRICTED"}, policies: []string{"forbid-restricted"}},
		{name: "consent deny denies", consents: consentDenies, req: request([]string{"clinician"}, "read", "Observation", "TREAT"),
			codes: []string{"CONSENT_DENY"}, policies: []string{"Consent/c1#provision"}},
		{name: "consent permit is reported", consents: consentOK, req: request([]string{"clinician"}, "read", "Observation", "TREAT"),
			allow: true, codes: []string{"POLICY_PERMIT", "CONSENT_PERMIT"}},
		{name: "consent permit alone is not enough", consents: consentOK, req: request([]string{"nurse"}, "update", "Observation", "TREAT"),
			codes: []string{"NO_PERMIT"}},
		{name: "break-glass policy overrides consent deny", consents: consentDenies,
			req:   breakGlass(request([]string{"clinician"}, "read", "Observation", "ETREAT")),
			allow: true, codes: []string{"POLICY_PERMIT", "CONSENT_OVERRIDDEN"}, tags: []string{"BREAK_GLASS", "CONSENT_OVERRIDE"}},
		{name: "consent store failure fails closed", consents: consentAnswer{err: errors.New("redis down")},
			req: request([]string{"clinician"}, "read", "Observation", "TREAT"), codes: []string{"CONSENT_UNAVAILABLE"}},
		{name: "no patient skips consent", consents: consentAnswer{err: errors.New("must not be asked")},
			req: request([]string{"clinician"}, "read", "Observation", "TREAT"), noPatient: true, allow: true, codes: []string{"POLICY_PERMIT"}},
		{name: "rego permit with obligations", consents: noConsent, req: request([]string{"billing"}, "read", "Claim", "HPAYMT"),
			allow: true, codes: []string{"POLICY_PERMIT"}, policies: []string{"billing-claims"}, masks: []string{"Claim.diagnosis"}, tags: []string{"PAYMENT"}, redact: []string{"PSY"}},
		{name: "rego deny object carries code", consents: noConsent, req: at(request([]string{"billing"}, "read", "Claim", "HPAYMT"), 3),
			codes: []string{"AFTER_HOURS"}, policies: []string{"no-night-billing"}},
		{name: "rego sees consent fact", consents: consentDenies, req: request([]string{"billing"}, "read", "Claim", "HPAYMT"),
			codes: []string{"POLICY_FORBID"}, policies: []string{"consent-deny-billing"}},
		{name: "cedar evaluation error is POLICY_ERROR", consents: noConsent, req: request([]string{"tester"}, "read", "Device", "TREAT"),
			codes: []string{"POLICY_ERROR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := engine.New(tt.consents, engine.WithRequestTime())
			e.Activate(b)
			req := tt.req
			if tt.noPatient {
				req.Resource.Patient = ""
			}
			resp := e.Check(context.Background(), req)
			if got := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW; got != tt.allow {
				t.Fatalf("allow = %v, want %v; reasons %v", got, tt.allow, resp.GetReasons())
			}
			var codes, policies []string
			for _, r := range resp.GetReasons() {
				codes = append(codes, r.GetCode())
				policies = append(policies, r.GetPolicyId())
			}
			if !slices.Equal(codes, tt.codes) {
				t.Errorf("reason codes = %v, want %v", codes, tt.codes)
			}
			for _, p := range tt.policies {
				if !slices.Contains(policies, p) {
					t.Errorf("reasons %v do not name policy %q", policies, p)
				}
			}
			o := resp.GetObligations()
			if tt.masks != nil && !slices.Equal(o.GetMaskPaths(), tt.masks) {
				t.Errorf("maskPaths = %v, want %v", o.GetMaskPaths(), tt.masks)
			}
			if tt.tags != nil && !slices.Equal(o.GetAuditTags(), tt.tags) {
				t.Errorf("auditTags = %v, want %v", o.GetAuditTags(), tt.tags)
			}
			var redact []string
			for _, l := range o.GetRedactLabels() {
				redact = append(redact, l.GetCode())
			}
			if tt.redact != nil && !slices.Equal(redact, tt.redact) {
				t.Errorf("redactLabels = %v, want %v", redact, tt.redact)
			}
			if !tt.allow && (len(o.GetMaskPaths()) > 0 || len(o.GetAuditTags()) > 0) {
				t.Errorf("a DENY carries obligations %v", o)
			}
			if resp.GetBundleRevision() != "t1" || resp.GetDecisionId() == "" || resp.GetCacheTtl().AsDuration() != 5*time.Second {
				t.Errorf("revision %q, decision id %q, cacheTtl %v", resp.GetBundleRevision(), resp.GetDecisionId(), resp.GetCacheTtl())
			}
		})
	}
}

func TestCheckWithoutBundle(t *testing.T) {
	t.Parallel()
	resp := engine.New(noConsent, engine.WithRequestTime()).Check(context.Background(), request([]string{"clinician"}, "read", "Observation", "TREAT"))
	if resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || resp.GetReasons()[0].GetCode() != "NO_BUNDLE" {
		t.Fatalf("got %v", resp)
	}
}

func TestNoConsentDenyManifest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyDir(t, "testdata/basic", dir)
	if err := os.WriteFile(dir+"/manifest.yaml", []byte("name: x\nrevision: r2\nnoConsent: deny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := engine.New(noConsent, engine.WithRequestTime())
	e.Activate(loadTestBundle(t, dir))
	resp := e.Check(context.Background(), request([]string{"clinician"}, "read", "Observation", "TREAT"))
	if resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || resp.GetReasons()[0].GetCode() != "NO_CONSENT" {
		t.Fatalf("got %v", resp)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	e := engine.New(consentOK, engine.WithRequestTime())
	e.Activate(loadTestBundle(t, "testdata/basic"))
	_, trace := e.Explain(context.Background(), request([]string{"clinician"}, "read", "Observation", "TREAT"))
	if trace.Consent == nil || trace.Consent.Decision != engine.ConsentPermit {
		t.Errorf("consent step = %+v", trace.Consent)
	}
	if len(trace.Layers) != 2 || trace.Layers[0].Layer != "cedar" || trace.Layers[0].Effect != "permit" || trace.Layers[1].Effect != "not-applicable" {
		t.Errorf("layers = %+v", trace.Layers)
	}
	if trace.Outcome != "ALLOW" || trace.String() == "" {
		t.Errorf("outcome = %q", trace.Outcome)
	}
}

func TestLoadBundleErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dir string
		file      string
	}{
		{name: "cedar syntax", dir: "testdata/badcedar", file: "p.cedar"},
		{name: "rego syntax", dir: "testdata/badrego", file: "p.rego"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := engine.LoadBundle(os.DirFS(tt.dir))
			var ce *engine.CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *CompileError", err)
			}
			if ce.File != tt.file {
				t.Errorf("error names %q, want %q: %v", ce.File, tt.file, err)
			}
		})
	}
	if _, err := engine.LoadBundle(os.DirFS(t.TempDir())); err == nil {
		t.Error("a directory without a manifest loaded")
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(from + "/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+"/"+e.Name(), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMemo(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/basic")
	switching := &switchingConsent{decision: engine.ConsentPermit}
	e := engine.New(switching, engine.WithRequestTime())
	e.Activate(b)
	ctx := context.Background()
	req := request([]string{"billing"}, "read", "Claim", "HPAYMT")
	for i := range 3 {
		if resp := e.Check(ctx, req); resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
			t.Fatalf("round %d: %v", i, resp)
		}
	}
	// The consent decision is part of the key: a rego rule denies billing
	// when consent denies.
	switching.decision = engine.ConsentDeny
	if resp := e.Check(ctx, req); resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || resp.GetReasons()[0].GetPolicyId() != "consent-deny-billing" {
		t.Fatalf("after consent change: %v", resp)
	}
	switching.decision = engine.ConsentPermit
	// The time is part of the key: 03:00 is after hours.
	night := request([]string{"billing"}, "read", "Claim", "HPAYMT")
	night.Context.Time = timestamppb.New(time.Date(2024, 6, 1, 3, 0, 0, 0, time.UTC))
	if resp := e.Check(ctx, night); resp.GetDecision() != chaperonev1.Decision_DECISION_DENY {
		t.Fatalf("night: %v", resp)
	}
	// Obligations handed out must not alias the remembered outcome.
	r1 := e.Check(ctx, req)
	r1.Obligations.MaskPaths[0] = "tampered"
	if r2 := e.Check(ctx, req); r2.GetObligations().GetMaskPaths()[0] != "Claim.diagnosis" {
		t.Fatalf("memo shared its slices: %v", r2.GetObligations())
	}
	// A new bundle starts with an empty memo.
	dir := t.TempDir()
	copyDir(t, "testdata/basic", dir)
	if err := os.WriteFile(dir+"/extra.rego", []byte("package chaperone.extra\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.Activate(loadTestBundle(t, dir))
	if resp := e.Check(ctx, req); resp.GetDecision() != chaperonev1.Decision_DECISION_DENY {
		t.Fatalf("after swap to a bundle without the billing rule: %v", resp)
	}
}

type switchingConsent struct{ decision engine.ConsentDecision }

func (s *switchingConsent) EvaluateConsent(context.Context, *chaperonev1.CheckRequest, time.Time, consent.Rule) (engine.ConsentResult, error) {
	return engine.ConsentResult{Decision: s.decision}, nil
}
