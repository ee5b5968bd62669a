package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
)

// The gateway's own token, as a caller of Chaperone.
const (
	callerIssuer   = "https://idp.chaperone.test"
	callerAudience = "chaperone"
)

// guard authenticates callers by tokens of callerIssuer (signed by the
// same keys) and lets the caller "edge-gateway" use the door only.
func (k *keys) guard(t *testing.T) *server.Guard {
	t.Helper()
	jwks, err := callers.NewJWKS(context.Background(), k.jwks, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jwks.Close(context.Background()) })
	v, err := callers.NewJWTVerifier(jwks, callers.JWTConfig{Issuer: callerIssuer, Audience: []string{callerAudience}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := callers.NewAuthorizer(callers.AuthzConfig{
		AnyAuthenticated: []string{},
		Callers:          []callers.CallerGrant{{Name: "edge-gateway", Subjects: []string{"gw"}, Allow: []string{gateway.Service}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := server.NewGuard(server.GuardConfig{JWT: v, Authorizer: a})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (k *keys) callerToken(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	return k.sign(t, "ES256", map[string]any{"iss": callerIssuer, "aud": callerAudience, "sub": sub,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()})
}

// outcomeCodes reads the reason codes of an OperationOutcome.
func outcomeCodes(t *testing.T, r reply) []string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+json" {
		t.Fatalf("status %d, Content-Type %q, body %s", r.status, ct, r.body)
	}
	var o struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity string `json:"severity"`
			Details  struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(r.body, &o); err != nil || o.ResourceType != "OperationOutcome" || len(o.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s (%v)", r.body, err)
	}
	var codes []string
	for _, is := range o.Issue {
		for _, c := range is.Details.Coding {
			if c.System != gateway.ReasonSystem {
				t.Fatalf("system %q", c.System)
			}
			codes = append(codes, c.Code)
		}
	}
	return codes
}

// TestForwardDoor drives the door over loopback HTTP behind a guard that
// authenticates the gateway by its own token in X-Chaperone-Authorization,
// while Authorization carries the end user's.
func TestForwardDoor(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	url, rec := serve(t, k.gateway(t, gateway.PhaseProxy), server.WithMiddleware(k.guard(t).Middleware))
	gw := "Bearer " + k.callerToken(t, "gw")
	nurse := clinician()
	nurse["fhirUser"], nurse["roles"] = "Practitioner/n1", "nurse"
	delete(nurse, "client_id")
	c := clinician()
	delete(c, "client_id")
	user := "Bearer " + k.sign(t, "RS256", c)
	nurseTok := "Bearer " + k.sign(t, "EdDSA", nurse)
	nginx := func(method, uri, tok string) map[string]string {
		return map[string]string{server.HeaderCallerAuthorization: gw, "Authorization": tok, "X-Original-Method": method, "X-Original-URI": uri}
	}
	traefik := func(method, uri, tok string) map[string]string {
		return map[string]string{server.HeaderCallerAuthorization: gw, "Authorization": tok, "X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
	}
	with := func(h map[string]string, k, v string) map[string]string { h[k] = v; return h }
	tests := []struct {
		name    string
		header  map[string]string
		status  int
		codes   []string // reason codes of a 401 or 403
		audited bool
		action  string // of the audited request
	}{
		{"an nginx read", nginx("GET", "/fhir/Observation/x1", user), 200, nil, true, "read"},
		{"a Traefik compartment search", traefik("GET", "/fhir/Patient/51/Observation?code=1234-5", user), 200, nil, true, "search"},
		{"a method in lower case (methods are case-sensitive)", nginx("get", "/fhir/Observation/x1", user), 403, []string{"METHOD_NOT_MAPPED"}, false, ""},
		{"a deny", nginx("GET", "/fhir/DocumentReference/doc-1", nurseTok), 403, []string{"NO_PERMIT"}, true, "read"},
		{"no end-user token", nginx("GET", "/fhir/Observation/x1", ""), 401, []string{gateway.ReasonUnauthenticated}, false, ""},
		{"the gateway's token as the end user's", nginx("GET", "/fhir/Observation/x1", gw), 401, []string{gateway.ReasonUnauthenticated}, false, ""},
		{"an encoded slash", nginx("GET", "/fhir/Observation/x%2F1", user), 403, []string{"ENCODED_SLASH"}, false, ""},
		{"reverse chaining", nginx("GET", "/fhir/Patient?_has:Observation:patient:code=1234-5", user), 403, []string{"REVERSE_CHAIN"}, false, ""},
		{"outside the FHIR base", nginx("GET", "/admin/Observation/x1", user), 403, []string{"OUTSIDE_BASE"}, false, ""},
		{"an unknown type", nginx("GET", "/fhir/observation/x1", user), 403, []string{"UNKNOWN_TYPE"}, false, ""},
		{"a POST _search without its body", nginx("POST", "/fhir/Observation/_search", user), 403, []string{"BODY_REQUIRED"}, false, ""},
		{"a system-level search", nginx("GET", "/fhir?_type=Observation", user), 403, []string{gateway.ReasonTypeRequired}, false, ""},
		{"no original URI", map[string]string{server.HeaderCallerAuthorization: gw, "Authorization": user, "X-Original-Method": "GET"}, 403, []string{gateway.ReasonOriginalRequest}, false, ""},
		{"nginx and Traefik headers that disagree", with(nginx("GET", "/fhir/Observation/x1", user), "X-Forwarded-Uri", "/fhir/Patient/52"), 403, []string{gateway.ReasonOriginalRequest}, false, ""},
		{"a method override", with(nginx("GET", "/fhir/Observation/x1", user), "X-HTTP-Method-Override", "DELETE"), 403, []string{gateway.ReasonMethodOverride}, false, ""},
		{"a conditional create", with(nginx("POST", "/fhir/Observation", user), "If-None-Exist", "identifier=x"), 403, []string{"CONDITIONAL"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rec.All())
			r := forward(t, url, tt.header)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status == 200 {
				if r.header.Get(gateway.HeaderDecisionID) == "" {
					t.Fatal("no decision id")
				}
				raw, err := base64.RawURLEncoding.DecodeString(r.header.Get(gateway.HeaderObligations))
				if err != nil {
					t.Fatalf("obligations %q: %v", r.header.Get(gateway.HeaderObligations), err)
				}
				var obl map[string]any
				if err := json.Unmarshal(raw, &obl); err != nil || obl["perEntryCheck"] != true {
					t.Fatalf("obligations %s, want perEntryCheck: %v", raw, err)
				}
			} else {
				if got := outcomeCodes(t, r); !slices.Equal(got, tt.codes) {
					t.Fatalf("codes %v, want %v", got, tt.codes)
				}
				// Nothing of the request or the token in the answer.
				for _, s := range []string{"x1", "Patient/5", "doc-1", "Observation", "eyJ"} {
					if strings.Contains(string(r.body), s) {
						t.Fatalf("answer %s carries %q", r.body, s)
					}
				}
			}
			if tt.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			recs := rec.All()[before:]
			if !tt.audited {
				if len(recs) != 0 {
					t.Fatalf("%d audit records for a refusal", len(recs))
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("%d audit records, want 1", len(recs))
			}
			got := recs[0]
			if got.Caller != "gw" || got.Req.GetAction() != tt.action || got.Req.GetContext().GetPhase() != gateway.PhaseRequest {
				t.Fatalf("record by %q of %v", got.Caller, got.Req)
			}
			if id := r.header.Get(gateway.HeaderDecisionID); id != got.Resp.GetDecisionId() {
				t.Fatalf("decision id %q, recorded %q", id, got.Resp.GetDecisionId())
			}
		})
	}
}

// TestForwardDoorCallerRefused: the gateway must be a granted caller; an
// end user's token in Authorization does not make one.
func TestForwardDoorCallerRefused(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	url, rec := serve(t, k.gateway(t, gateway.PhaseProxy), server.WithMiddleware(k.guard(t).Middleware))
	user := "Bearer " + k.sign(t, "ES256", clinician())
	for _, h := range []map[string]string{
		{"Authorization": user, "X-Original-Method": "GET", "X-Original-URI": "/fhir/Observation/x1"},
		{server.HeaderCallerAuthorization: "Bearer " + k.callerToken(t, "someone-else"), "Authorization": user, "X-Original-Method": "GET", "X-Original-URI": "/fhir/Observation/x1"},
	} {
		if r := forward(t, url, h); r.status == 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	if n := len(rec.All()); n != 0 {
		t.Fatalf("%d records", n)
	}
}

// TestNoResourceEnforcement: with resourcePhase none, an ALLOW that needs
// per-entry checks is a DENY NO_RESOURCE_ENFORCEMENT, recorded as such.
func TestNoResourceEnforcement(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	url, rec := serve(t, k.gateway(t, gateway.PhaseNone))
	c := clinician()
	delete(c, "client_id")
	for _, uri := range []string{"/fhir/Observation/x1", "/fhir/Patient/51/Observation"} {
		r := forward(t, url, map[string]string{"Authorization": "Bearer " + k.sign(t, "ES256", c), "X-Original-Method": "GET", "X-Original-URI": uri})
		if r.status != 403 || r.header.Get(gateway.HeaderObligations) != "" {
			t.Fatalf("%s: status %d, obligations %q", uri, r.status, r.header.Get(gateway.HeaderObligations))
		}
		if got := outcomeCodes(t, r); !slices.Equal(got, []string{gateway.ReasonNoResourceEnforcement}) {
			t.Fatalf("%s: codes %v", uri, got)
		}
	}
	recs := rec.All()
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		if r.Resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || r.Resp.GetReasons()[0].GetCode() != gateway.ReasonNoResourceEnforcement {
			t.Fatalf("recorded %v", r.Resp)
		}
	}
}
