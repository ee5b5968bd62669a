package e2e_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/structpb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestServeWithRedis runs the binary on a real redis-server: a consent put
// through ConsentService decides the next Check, a revocation the one after,
// the consent cache and Redis metrics are published, and with Redis killed
// the next decision about a patient is DENY CONSENT_UNAVAILABLE.
func TestServeWithRedis(t *testing.T) {
	t.Parallel()
	redisSrv := redistest.StartServer(t)
	addr := redisSrv.Addr()
	dir := t.TempDir()
	_, base := startServe(t, "--redis", "redis://"+addr+"/0", "--audit-file", filepath.Join(dir, "audit.jsonl"))
	ctx := context.Background()

	// A patient who restricts the record from Organization/o1 (a general
	// opt-out would leave that organization's own care open).
	optOut, err := structpb.NewStruct(map[string]any{
		"resourceType": "Consent", "id": "e2e-optout", "status": "active",
		"scope":     map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"category":  []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "59284-0"}}}},
		"patient":   map[string]any{"reference": "Patient/e2e"},
		"dateTime":  "2024-01-01",
		"provision": map[string]any{"type": "deny", "actor": []any{map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}}, "reference": map[string]any{"reference": "Organization/o1"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	consents := chaperonev1connect.NewConsentServiceClient(httpClient(), base)
	if _, err := consents.Put(ctx, connect.NewRequest(&chaperonev1.ConsentServicePutRequest{Consent: optOut})); err != nil {
		t.Fatal(err)
	}
	decisions := chaperonev1connect.NewDecisionServiceClient(httpClient(), base)
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/e2e", Organization: "Organization/o1"},
		PurposeOfUse: "TREAT",
	}
	check := func() *chaperonev1.CheckResponse {
		t.Helper()
		resp, err := decisions.Check(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY || r.GetReasons()[0].GetCode() != "CONSENT_DENY" {
		t.Fatalf("with the opt-out: %v", r)
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY {
		t.Fatalf("second check: %v", r)
	}
	if _, err := consents.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "e2e-optout"})); err != nil {
		t.Fatal(err)
	}
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("after the revocation: %v", r)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		f, ok := families[name]
		if !ok || len(f.GetMetric()) == 0 {
			t.Fatalf("metric %s missing", name)
		}
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	if hits, misses := value("chaperone_consent_cache_hits_total"), value("chaperone_consent_cache_misses_total"); hits < 1 || misses < 1 {
		t.Errorf("consent cache hits %v, misses %v: want both after three checks with a write between", hits, misses)
	}
	if errs := value("chaperone_redis_errors_total"); errs != 0 {
		t.Errorf("redis errors %v on a healthy redis", errs)
	}

	// Another patient, not in the cache: with Redis gone, the consent state
	// is unknown and the answer is a DENY.
	redisSrv.Kill()
	req.Resource.Patient = "Patient/e2e-other"
	if r := check(); r.GetDecision() != chaperonev1.Decision_DECISION_DENY || r.GetReasons()[0].GetCode() != "CONSENT_UNAVAILABLE" {
		t.Fatalf("with redis down: %v", r)
	}
}
