package extauthz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// bundleOf is a batch or transaction Bundle of the entries' "METHOD url".
func bundleOf(typ string, entries ...string) string {
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		Request request `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: typ}
	for _, e := range entries {
		m, u, _ := strings.Cut(e, " ")
		b.Entry = append(b.Entry, entry{request{m, u}})
	}
	out, _ := json.Marshal(b)
	return string(out)
}

// outcomeExpressions are the expressions of an OperationOutcome's issues.
func outcomeExpressions(t *testing.T, body string) []string {
	t.Helper()
	var o struct {
		Issue []struct {
			Expression []string `json:"expression"`
		} `json:"issue"`
	}
	if err := json.Unmarshal([]byte(body), &o); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	var out []string
	for _, i := range o.Issue {
		out = append(out, i.Expression...)
	}
	return out
}

// A batch or transaction whose Bundle Envoy sends is decided entry by
// entry: allowed when every entry is, one decision and one audit record
// per entry decided; the first denied entry denies it, named in the
// OperationOutcome; an entry that cannot be mapped refuses it undecided,
// named too;
// without its body it is refused BODY_REQUIRED.
func TestCheckBatch(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	nurse := iss.endUser(t, "Practitioner/n1", "nurse")
	tests := []struct {
		name    string
		token   string
		body    string
		status  int    // 200 for an allow
		code    string // a reason code of a deny
		entry   string // the expression of a deny naming an entry
		records int    // audit records
		ids     int    // decision ids of an allow
	}{
		{"a batch of allowed reads and searches", clinician,
			bundleOf("batch", "GET Observation?patient=Patient/51", "GET Condition/con-1", "GET Patient/51/Observation"), 200, "", "", 3, 3},
		{"a transaction of one allowed entry", clinician, bundleOf("transaction", "GET Observation/o1"), 200, "", "", 1, 1},
		{"the second entry denied", nurse,
			bundleOf("batch", "GET Condition/con-1", "GET DocumentReference/doc-1", "GET Observation/o1"), 403, "NO_PERMIT", "Bundle.entry[1]", 2, 0},
		{"the first entry denied", nurse, bundleOf("transaction", "DELETE DocumentReference/doc-1", "GET Condition/con-1"), 403, "DEVICE_UNTRUSTED", "Bundle.entry[0]", 1, 0},
		{"an entry that cannot be mapped", clinician,
			bundleOf("batch", "GET Observation/o1", "GET Observation?_has:Observation:patient:code=1"), 403, "REVERSE_CHAIN", "Bundle.entry[1]", 0, 0},
		{"an entry with an encoded slash", clinician, bundleOf("batch", "GET Observation/a%2Fb"), 403, "ENCODED_SLASH", "Bundle.entry[0]", 0, 0},
		{"an entry of no type", clinician, bundleOf("batch", "GET Observation/o1", "GET _history"), 403, gateway.ReasonTypeRequired, "Bundle.entry[1]", 0, 0},
		{"a nested batch", clinician, bundleOf("batch", "POST "), 403, "BAD_BUNDLE", "Bundle.entry[0]", 0, 0},
		{"a Bundle of another type", clinician, bundleOf("collection", "GET Observation/o1"), 403, "BAD_BUNDLE", "", 0, 0},
		{"a member twice", clinician, `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","Method":"DELETE","url":"Observation/o1"}}]}`, 403, "BAD_BUNDLE", "", 0, 0},
		{"no body", clinician, "", 403, "BODY_REQUIRED", "", 0, 0},
		{"no token", "", bundleOf("batch", "GET Observation/o1"), 401, gateway.ReasonUnauthenticated, "", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t, iss.mapper(t, gateway.PhaseProxy), nil)
			h := map[string]string{"content-type": "application/fhir+json"}
			if tc.token != "" {
				h["authorization"] = tc.token
			}
			resp, err := ts.check(t, "", http.MethodPost, "/fhir", h, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			recs := ts.recorder.All()
			if len(recs) != tc.records {
				t.Errorf("%d audit records, want %d", len(recs), tc.records)
			}
			if tc.status == 200 {
				ok := resp.GetOkResponse()
				if resp.GetStatus().GetCode() != 0 || ok == nil {
					t.Fatalf("not allowed: %v", resp)
				}
				id, _ := headerOf(ok.GetHeaders(), extauthz.HeaderDecisionID)
				ids := strings.Split(id, ",")
				if len(ids) != tc.ids {
					t.Errorf("decision ids %q, want %d", id, tc.ids)
				}
				for i, rec := range recs {
					if !slices.Contains(ids, rec.Resp.GetDecisionId()) || rec.Req.GetContext().GetPhase() != "request" {
						t.Errorf("record %d: %v for ids %v", i, rec.Req, ids)
					}
				}
				enc, _ := headerOf(ok.GetHeaders(), extauthz.HeaderObligations)
				raw, err := base64.RawURLEncoding.DecodeString(enc)
				if err != nil {
					t.Fatal(err)
				}
				var obl map[string]any
				if err := json.Unmarshal(raw, &obl); err != nil || obl["perEntryCheck"] != true {
					t.Errorf("obligations %s (%v), want perEntryCheck", raw, err)
				}
				return
			}
			d := resp.GetDeniedResponse()
			if resp.GetStatus().GetCode() != 7 || d == nil {
				t.Fatalf("not denied: %v", resp)
			}
			if got := int(d.GetStatus().GetCode()); got != tc.status {
				t.Errorf("HTTP status %d, want %d", got, tc.status)
			}
			if codes := outcomeCodes(t, d.GetBody()); !slices.Contains(codes, tc.code) {
				t.Errorf("codes %v, want %s", codes, tc.code)
			}
			exprs := outcomeExpressions(t, d.GetBody())
			if tc.entry != "" && !slices.Contains(exprs, tc.entry) || tc.entry == "" && len(exprs) != 0 {
				t.Errorf("expressions %v, want %q", exprs, tc.entry)
			}
			if tc.records > 0 {
				id, _ := headerOf(d.GetHeaders(), extauthz.HeaderDecisionID)
				if last := recs[len(recs)-1]; last.Resp.GetDecisionId() != id || last.Resp.GetDecision().String() != "DECISION_DENY" {
					t.Errorf("decision id %q, last record %v", id, last.Resp)
				}
			}
		})
	}
}

// An entry whose target cannot be fetched (attributes.fhirServer down)
// refuses the batch, named, before any other entry is decided; the
// refused entry is on the audit chain as a DENY naming why.
func TestCheckBatchTargetUnavailable(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	down := srv.URL
	srv.Close()
	file := strings.NewReplacer("JWKS", iss.jwks, "PHASE", gateway.PhaseProxy).Replace(gatewayFile) + "attributes:\n  fhirServer: " + down + "\n"
	cfg, err := gateway.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	ts := start(t, extauthz.FromGateway(g), nil)
	h := map[string]string{"authorization": iss.endUser(t, "Practitioner/p1", "clinician")}
	resp, err := ts.check(t, "", http.MethodPost, "/fhir", h, bundleOf("batch", "GET Observation?patient=Patient/51", "GET Observation/o1"))
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDeniedResponse()
	if d == nil || d.GetStatus().GetCode() != 403 {
		t.Fatalf("not denied 403: %v", resp)
	}
	if codes, exprs := outcomeCodes(t, d.GetBody()), outcomeExpressions(t, d.GetBody()); !slices.Equal(codes, []string{gateway.ReasonTargetUnavailable}) || !slices.Equal(exprs, []string{"Bundle.entry[1]"}) {
		t.Errorf("codes %v at %v, want TARGET_UNAVAILABLE at Bundle.entry[1]", codes, exprs)
	}
	all := ts.recorder.All()
	if len(all) != 1 || all[0].Resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || all[0].Resp.GetReasons()[0].GetCode() != gateway.ReasonTargetUnavailable ||
		all[0].Req.GetResource().GetId() != "o1" {
		t.Errorf("%d records, want one DENY TARGET_UNAVAILABLE of Observation/o1", len(all))
	}
}
