package authzen_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/server"
)

// Items of an evaluations request over the allowBody defaults: allowed,
// denied (another organization's resource), allowed.
const (
	itemAllow = `{}`
	itemDeny  = `{"resource": {"type": "Observation", "id": "o2", "properties": {"patient": "Patient/52", "organization": "Organization/o2"}}}`
)

func evaluations(options string, items ...string) string {
	body := strings.TrimSuffix(allowBody, "}")
	if options != "" {
		body += `, "options": ` + options
	}
	if items != nil {
		body += `, "evaluations": [` + strings.Join(items, ", ") + `]`
	}
	return body + "}"
}

// TestEvaluations: defaults replaced whole by an item's entity, the three
// semantics, an empty or missing list as a single evaluation, 400s.
func TestEvaluations(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	tests := []struct {
		name   string
		body   string
		status int
		single bool   // answered as one evaluation
		want   string // decisions, "+" allow "-" deny
		msg    string
	}{
		{name: "execute_all by default", body: evaluations("", itemAllow, itemDeny, itemAllow), status: 200, want: "+-+"},
		{name: "execute_all", body: evaluations(`{"evaluations_semantic": "execute_all"}`, itemAllow, itemDeny, itemAllow), status: 200, want: "+-+"},
		{name: "deny_on_first_deny", body: evaluations(`{"evaluations_semantic": "deny_on_first_deny"}`, itemAllow, itemDeny, itemAllow), status: 200, want: "+-"},
		{name: "deny_on_first_deny, no deny", body: evaluations(`{"evaluations_semantic": "deny_on_first_deny"}`, itemAllow, itemAllow), status: 200, want: "++"},
		{name: "permit_on_first_permit", body: evaluations(`{"evaluations_semantic": "permit_on_first_permit"}`, itemDeny, itemAllow, itemDeny), status: 200, want: "-+"},
		{name: "other options are ignored", body: evaluations(`{"page_size": 3}`, itemAllow, itemDeny), status: 200, want: "+-"},
		{name: "unknown semantic", body: evaluations(`{"evaluations_semantic": "first_match"}`, itemAllow), status: 400, msg: "evaluations_semantic"},
		{name: "semantic not a string", body: evaluations(`{"evaluations_semantic": 1}`, itemAllow), status: 400, msg: "evaluations_semantic"},
		{name: "options not an object", body: evaluations(`"all"`, itemAllow), status: 400, msg: "options"},
		{name: "empty list", body: evaluations("", ""), status: 200, single: true, want: "+"},
		{name: "no list", body: allowBody, status: 200, single: true, want: "+"},
		{name: "empty list without defaults", body: `{"evaluations": []}`, status: 400, msg: "subject: required"},
		// The item's subject replaces the default whole: its roles are gone.
		{name: "entity replaced whole", body: evaluations("", `{"subject": {"type": "practitioner", "id": "p1"}}`), status: 200, want: "-"},
		{name: "context replaced whole", body: evaluations("", `{"context": {"networkZone": "clinic"}}`), status: 200, want: "-"},
		{name: "item without a required entity", body: `{"evaluations": [{` + subjectP1 + `, ` + actionRead + `}]}`, status: 400, msg: "evaluations[0].resource: required"},
		{name: "item entity mistyped", body: evaluations("", itemAllow, `{"action": "read"}`), status: 400, msg: "evaluations[1].action: wrong type"},
		{name: "item properties not an object", body: evaluations("", `{"resource": {"type": "Observation", "id": "o1", "properties": 3}}`), status: 400, msg: "evaluations[0].resource.properties"},
		{name: "evaluations not an array", body: evaluations("", "") + "", status: 200, single: true, want: "+"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := post(t, srv.url+authzen.EvaluationsPath, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status != 200 {
				if !strings.Contains(string(r.body), tc.msg) {
					t.Fatalf("message %q does not say %q", r.body, tc.msg)
				}
				return
			}
			m := r.json(t)
			var got string
			if tc.single {
				if _, ok := m["evaluations"]; ok {
					t.Fatalf("want a single answer: %s", r.body)
				}
				if readDecision(t, m).decision {
					got = "+"
				} else {
					got = "-"
				}
			} else {
				list, ok := m["evaluations"].([]any)
				if !ok {
					t.Fatalf("no evaluations: %s", r.body)
				}
				for _, e := range list {
					if readDecision(t, e.(map[string]any)).decision {
						got += "+"
					} else {
						got += "-"
					}
				}
			}
			if got != tc.want {
				t.Fatalf("decisions %q, want %q: %s", got, tc.want, r.body)
			}
		})
	}
	if r := post(t, srv.url+authzen.EvaluationsPath, `{"evaluations": {}}`); r.status != 400 {
		t.Fatalf("evaluations an object: status %d", r.status)
	}
}

// TestRequestID: X-Request-ID comes back on every answer, errors included,
// with and without the guard in front.
func TestRequestID(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	guarded := start(t, iss.guard(t, callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "gateway", Subjects: []string{"gw"}, Allow: []string{authzen.Service}},
	}}, 0))
	plain := start(t, nil)
	gw := "Bearer " + iss.token(t, "gw")
	other := "Bearer " + iss.token(t, "someone")
	for _, tc := range []struct {
		name, url, method, ct, body, auth string
		status                            int
	}{
		{"decision", plain.url + authzen.EvaluationPath, "POST", "application/json", allowBody, "", 200},
		{"400", plain.url + authzen.EvaluationPath, "POST", "application/json", `{`, "", 400},
		{"wrong content type", plain.url + authzen.EvaluationPath, "POST", "text/plain", allowBody, "", 400},
		{"evaluations 400", plain.url + authzen.EvaluationsPath, "POST", "application/json", `{"options": {"evaluations_semantic": "x"}}`, "", 400},
		{"configuration", plain.url + authzen.ConfigurationPath, "GET", "", "", "", 200},
		{"guarded decision", guarded.url + authzen.EvaluationPath, "POST", "application/json", allowBody, gw, 200},
		{"guarded 400", guarded.url + authzen.EvaluationPath, "POST", "application/json", `[`, gw, 400},
		{"unauthenticated", guarded.url + authzen.EvaluationPath, "POST", "application/json", allowBody, "", 401},
		{"not granted", guarded.url + authzen.EvaluationPath, "POST", "application/json", allowBody, other, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := "req-" + strings.ReplaceAll(tc.name, " ", "-")
			h := map[string]string{"X-Request-ID": id}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			r := do(t, tc.method, tc.url, tc.ct, tc.body, h)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := r.header.Get("X-Request-ID"); got != id {
				t.Fatalf("X-Request-ID %q, want %q", got, id)
			}
		})
	}
}

// TestGuard: the door is behind the guard: authenticated, authorized by
// its procedure names (granted in the callers file, not open to any
// authenticated caller by default), rate limited per decision, and each
// decision is audited with the authenticated caller.
func TestGuard(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	srv := start(t, iss.guard(t, callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "gateway", Subjects: []string{"gw"}, Allow: []string{authzen.Service}},
		{Name: "single", Subjects: []string{"one"}, Allow: []string{authzen.Service + "/Evaluation"}},
		{Name: "check-only", Subjects: []string{"chk"}, Allow: []string{"chaperone.v1.DecisionService"}},
		{Name: "limited", Subjects: []string{"lim"}, Allow: []string{"*"}, RateLimit: &callers.RateSpec{PerSecond: 0.001, Burst: 3}},
	}}, 0))
	for _, tc := range []struct {
		name, sub, path string
		status          int
	}{
		{"service grant, evaluation", "gw", authzen.EvaluationPath, 200},
		{"service grant, evaluations", "gw", authzen.EvaluationsPath, 200},
		{"service grant, configuration", "gw", authzen.ConfigurationPath, 200},
		{"method grant, evaluation", "one", authzen.EvaluationPath, 200},
		{"method grant, evaluations", "one", authzen.EvaluationsPath, 403},
		{"method grant, configuration", "one", authzen.ConfigurationPath, 403},
		{"DecisionService grant only", "chk", authzen.EvaluationPath, 403},
		{"no grant", "nobody", authzen.EvaluationPath, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method, ct, body := "POST", "application/json", evaluations("", itemAllow)
			if tc.path == authzen.EvaluationPath {
				body = allowBody
			}
			if tc.path == authzen.ConfigurationPath {
				method, ct, body = "GET", "", ""
			}
			r := do(t, method, srv.url+tc.path, ct, body, map[string]string{"Authorization": "Bearer " + iss.token(t, tc.sub)})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status != 200 || method == "GET" {
				return
			}
			m := r.json(t)
			if l, ok := m["evaluations"].([]any); ok {
				m = l[0].(map[string]any)
			}
			d := readDecision(t, m)
			for _, rec := range srv.recorder.All() {
				if rec.Resp.GetDecisionId() == d.decisionID && rec.Caller != tc.sub {
					t.Fatalf("audited caller %q, want %q", rec.Caller, tc.sub)
				}
			}
			if byDecisionID(srv.recorder)[d.decisionID] != 1 {
				t.Fatal("not audited once")
			}
		})
	}

	// Rate limits count decisions: a burst of 3 pays for 2 + 1, then
	// refuses; a batch larger than what is left is refused whole.
	lim := map[string]string{"Authorization": "Bearer " + iss.token(t, "lim")}
	for i, step := range []struct {
		items  int
		status int
	}{{2, 200}, {2, 429}, {1, 200}, {1, 429}} {
		items := make([]string, step.items)
		for j := range items {
			items[j] = itemAllow
		}
		before := len(srv.recorder.All())
		r := do(t, "POST", srv.url+authzen.EvaluationsPath, "application/json", evaluations("", items...), lim)
		if r.status != step.status {
			t.Fatalf("step %d: status %d, want %d: %s", i, r.status, step.status, r.body)
		}
		if step.status == http.StatusTooManyRequests {
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("step %d: no Retry-After", i)
			}
			if n := len(srv.recorder.All()) - before; n != 0 {
				t.Fatalf("step %d: %d decisions audited for a refused request", i, n)
			}
		}
	}
}

// TestConfiguration: the metadata names the endpoints on the host it was
// fetched from and the obligation types.
func TestConfiguration(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	m := do(t, "GET", srv.url+authzen.ConfigurationPath, "", "", nil).json(t)
	for k, want := range map[string]string{
		"policy_decision_point":       srv.url,
		"access_evaluation_endpoint":  srv.url + "/access/v1/evaluation",
		"access_evaluations_endpoint": srv.url + "/access/v1/evaluations",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %s", k, m[k], want)
		}
	}
	if got := fmt.Sprint(m["supported_obligations"]); got != "[fhir-mask fhir-redact-labels audit-tags per-entry-check]" {
		t.Errorf("supported_obligations %s", got)
	}
	if _, ok := m["capabilities"].([]any); !ok {
		t.Errorf("capabilities %v", m["capabilities"])
	}
}

// TestMetrics: door requests are counted under their procedure names and
// their decisions with Check's.
func TestMetrics(t *testing.T) {
	t.Parallel()
	m := server.NewMetrics()
	g, err := server.NewGuard(server.GuardConfig{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, g, server.WithMetrics(m))
	post(t, srv.url+authzen.EvaluationPath, allowBody)
	post(t, srv.url+authzen.EvaluationsPath, evaluations("", itemAllow, itemDeny))
	post(t, srv.url+authzen.EvaluationPath, `{`)
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = mt.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"chaperone_rpc_requests_total,code=ok,procedure=" + authzen.EvaluationProcedure:               1,
		"chaperone_rpc_requests_total,code=invalid_argument,procedure=" + authzen.EvaluationProcedure: 1,
		"chaperone_rpc_requests_total,code=ok,procedure=" + authzen.EvaluationsProcedure:              1,
		"chaperone_decisions_total,decision=allow":                                                    2,
		"chaperone_decisions_total,decision=deny":                                                     1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
