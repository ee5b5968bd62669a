package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/gateway"
)

// TestTokens: only a valid RS256, ES256 or EdDSA token of the issuer for
// the audience, not expired and not too long-lived, with an id claim,
// gets a CheckRequest; everything else is 401 with a fixed reason.
func TestTokens(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	g := k.gateway(t, gateway.PhaseProxy)
	now := time.Now()
	with := func(change func(map[string]any)) map[string]any {
		c := clinician()
		change(c)
		return c
	}
	tests := []struct {
		name   string
		header string // the Authorization header; "" for none
		want   string // "" for accepted, else the refusal's detail
	}{
		{"RS256", "Bearer " + k.sign(t, "RS256", clinician()), ""},
		{"ES256", "Bearer " + k.sign(t, "ES256", clinician()), ""},
		{"EdDSA", "Bearer " + k.sign(t, "EdDSA", clinician()), ""},
		{"the scheme in any case", "bearer " + k.sign(t, "ES256", clinician()), ""},
		{"no token", "", callers.ReasonMissingToken},
		{"another scheme", "Basic dXNlcjpwYXNz", callers.ReasonMissingToken},
		{"alg none", "Bearer " + k.sign(t, "none", clinician()), callers.ReasonAlgorithm},
		{"HS256", "Bearer " + k.sign(t, "HS256", clinician()), callers.ReasonAlgorithm},
		{"not a JWS", "Bearer abc.def", callers.ReasonMalformed},
		{"another token's signature", "Bearer " + forge(k.sign(t, "ES256", with(func(c map[string]any) { c["roles"] = "admin" })), k.sign(t, "ES256", clinician())), callers.ReasonSignature},
		{"expired", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		})), callers.ReasonExpired},
		{"not yet valid", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), callers.ReasonNotYetValid},
		{"too long-lived", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { c["exp"] = now.Add(48 * time.Hour).Unix() })), callers.ReasonLifetime},
		{"wrong audience", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { c["aud"] = "https://other.test" })), callers.ReasonAudience},
		{"wrong issuer", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { c["iss"] = "https://evil.test" })), callers.ReasonIssuer},
		{"no exp", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { delete(c, "exp") })), callers.ReasonMissingClaim},
		{"no sub", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { delete(c, "sub") })), callers.ReasonMissingClaim},
		{"no id claim", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { delete(c, "fhirUser") })), callers.ReasonMissingClaim},
		{"an id claim that is not a string", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { c["fhirUser"] = 7 })), callers.ReasonMissingClaim},
		{"roles of numbers", "Bearer " + k.sign(t, "ES256", with(func(c map[string]any) { c["roles"] = []any{1, 2} })), callers.ReasonMissingClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.header != "" {
				h.Set("Authorization", tt.header)
			}
			req, err := g.Map(context.Background(), "GET", "/fhir/Observation/x1", h)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				s := req.Check.GetSubject()
				if s.GetId() != "Practitioner/p1" || s.GetKind() != "practitioner" || !slices.Equal(s.GetRoles(), []string{"clinician"}) {
					t.Fatalf("subject %v", s)
				}
				return
			}
			var ref *gateway.Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("err %v, want a refusal", err)
			}
			if ref.Status != http.StatusUnauthorized || ref.Code != gateway.ReasonUnauthenticated || ref.Detail != tt.want {
				t.Fatalf("refusal %d %s %q, want 401 %q", ref.Status, ref.Code, ref.Detail, tt.want)
			}
		})
	}
}

// forge is the header and payload of a with the signature of b.
func forge(a, b string) string {
	i, j := strings.LastIndexByte(a, '.'), strings.LastIndexByte(b, '.')
	return a[:i] + b[j:]
}

// TestSubjectFromClaims: roles and scopes as arrays or space-separated
// strings, the kind from the id's type when there is no kind claim, an
// absolute fhirUser on the audience, a bare SMART patient, the purpose
// from the header or the default.
func TestSubjectFromClaims(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	g := k.gateway(t, gateway.PhaseProxy)
	tests := []struct {
		name    string
		change  func(map[string]any)
		purpose string
		check   func(t *testing.T, r *gateway.Request)
	}{
		{"roles and scopes as arrays", func(c map[string]any) {
			c["roles"] = []any{"clinician", "nurse"}
			c["scope"] = []any{"user/*.rs", "openid"}
		}, "", func(t *testing.T, r *gateway.Request) {
			s := r.Check.GetSubject()
			if !slices.Equal(s.GetRoles(), []string{"clinician", "nurse"}) || !slices.Equal(s.GetScopes(), []string{"user/*.rs", "openid"}) {
				t.Fatalf("subject %v", s)
			}
		}},
		{"roles and scopes as strings", func(c map[string]any) {
			c["roles"] = "clinician  nurse"
			c["scope"] = "user/*.rs openid"
		}, "", func(t *testing.T, r *gateway.Request) {
			s := r.Check.GetSubject()
			if !slices.Equal(s.GetRoles(), []string{"clinician", "nurse"}) || !slices.Equal(s.GetScopes(), []string{"user/*.rs", "openid"}) {
				t.Fatalf("subject %v", s)
			}
		}},
		{"a patient with an absolute fhirUser and a bare launch patient", func(c map[string]any) {
			c["fhirUser"] = testAudience + "/Patient/52"
			c["patient"] = "52"
			delete(c, "roles")
		}, "", func(t *testing.T, r *gateway.Request) {
			s := r.Check.GetSubject()
			if s.GetId() != "Patient/52" || s.GetKind() != "patient" || s.GetLaunchPatient() != "Patient/52" {
				t.Fatalf("subject %v", s)
			}
		}},
		{"organization and client", func(map[string]any) {}, "", func(t *testing.T, r *gateway.Request) {
			s := r.Check.GetSubject()
			if s.GetOrganization() != "Organization/o1" || s.GetClientId() != "app1" {
				t.Fatalf("subject %v", s)
			}
			if r.Check.GetPurposeOfUse() != "TREAT" || r.Check.GetContext().GetPhase() != gateway.PhaseRequest {
				t.Fatalf("request %v", r.Check)
			}
		}},
		{"the purpose header", func(map[string]any) {}, "HPAYMT", func(t *testing.T, r *gateway.Request) {
			if r.Check.GetPurposeOfUse() != "HPAYMT" {
				t.Fatalf("purpose %q", r.Check.GetPurposeOfUse())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := clinician()
			tt.change(c)
			h := http.Header{"Authorization": {"Bearer " + k.sign(t, "ES256", c)}}
			if tt.purpose != "" {
				h.Set("X-Purpose-Of-Use", tt.purpose)
			}
			r, err := g.Map(context.Background(), "GET", "/fhir/Observation/x1", h)
			if err != nil {
				t.Fatal(err)
			}
			if r.Check.GetAction() != "read" || r.Check.GetResource().GetType() != "Observation" || r.Check.GetResource().GetId() != "x1" {
				t.Fatalf("request %v", r.Check)
			}
			tt.check(t, r)
		})
	}
}
