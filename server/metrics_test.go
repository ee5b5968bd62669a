package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// scrape fetches /metrics over HTTP and parses the text format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the counter, gauge or histogram count of the sample of
// family name whose labels include want; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	k := newSigner(t, "k1")
	v := newVerifier(t, writeFile(t, t.TempDir(), "jwks.json", jwksJSON(t, k)), time.Hour)
	m := server.NewMetrics()
	hits, misses, queue := uint64(3), uint64(1), 7
	if err := m.ConsentCache(func() uint64 { return hits }, func() uint64 { return misses }); err != nil {
		t.Fatal(err)
	}
	if err := m.RedisErrors(func() uint64 { return 2 }); err != nil {
		t.Fatal(err)
	}
	if err := m.Bundle(func() string { return "2026.11.25-1" }, func() uint64 { return 1 }); err != nil {
		t.Fatal(err)
	}
	if err := m.AuditQueue(func() int { return queue }, func() uint64 { return 4 }); err != nil {
		t.Fatal(err)
	}
	if err := m.RedisErrors(func() uint64 { return 0 }); err == nil {
		t.Error("registering a hook twice: want an error")
	}
	g := startGuarded(t, server.GuardConfig{JWT: v, Metrics: m}, nil)

	client := chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second}, g.base)
	tok := k.sign(t, claims{})
	for range 3 {
		req := connect.NewRequest(checkRequest(t))
		req.Header().Set("Authorization", "Bearer "+tok)
		if _, err := client.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Check(context.Background(), connect.NewRequest(checkRequest(t))); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("without a token: %v", err)
	}
	bad := connect.NewRequest(checkRequest(t))
	bad.Msg.Action = ""
	bad.Header().Set("Authorization", "Bearer "+tok)
	if _, err := client.Check(context.Background(), bad); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("invalid request: %v", err)
	}

	fams := scrape(t, g.base)
	const check = "/chaperone.v1.DecisionService/Check"
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"chaperone_rpc_requests_total", map[string]string{"procedure": check, "code": "ok"}, 3},
		{"chaperone_rpc_requests_total", map[string]string{"procedure": check, "code": "unauthenticated"}, 1},
		{"chaperone_rpc_requests_total", map[string]string{"procedure": check, "code": "invalid_argument"}, 1},
		{"chaperone_rpc_duration_seconds", map[string]string{"procedure": check}, 5},
		{"chaperone_decisions_total", map[string]string{"decision": "allow"}, 3},
		{"chaperone_decision_reasons_total", map[string]string{"decision": "allow", "reason": "POLICY_PERMIT"}, 3},
		{"chaperone_caller_refusals_total", map[string]string{"code": "unauthenticated"}, 1},
		{"chaperone_consent_cache_hits_total", nil, 3},
		{"chaperone_consent_cache_misses_total", nil, 1},
		{"chaperone_consent_cache_hit_ratio", nil, 0.75},
		{"chaperone_redis_errors_total", nil, 2},
		{"chaperone_bundle_info", map[string]string{"revision": "2026.11.25-1"}, 1},
		{"chaperone_bundle_load_failures_total", nil, 1},
		{"chaperone_audit_queue_depth", nil, 7},
		{"chaperone_audit_dropped_total", nil, 4},
	} {
		got, ok := value(fams, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}

	// Paths that are not procedures do not make new label values.
	req, _ := http.NewRequest(http.MethodPost, g.base+"/chaperone.v1.DecisionService/Nope", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	queue = 9
	fams = scrape(t, g.base)
	if _, ok := value(fams, "chaperone_rpc_requests_total", map[string]string{"procedure": "/chaperone.v1.DecisionService/Nope"}); ok {
		t.Error("an unknown path became a procedure label")
	}
	if got, _ := value(fams, "chaperone_audit_queue_depth", nil); got != 9 {
		t.Errorf("queue depth not read at scrape time: %v", got)
	}
}
