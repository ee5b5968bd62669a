package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/gateway"
)

// TestRevokedTokenNeverReachesUpstream: the proxy verifies end users'
// tokens itself, so it reads the revocation list too: a token accepted
// (and cached) before its revocation is answered 401 after it, and the
// FHIR server never sees the request; a token without jti is refused
// with RequireJTI.
func TestRevokedTokenNeverReachesUpstream(t *testing.T) {
	t.Parallel()
	list := access.NewMemory()
	r := newRigWith(t, map[string]string{"GET /fhir/Observation/o1": res("Observation", "o1", "o1", "Patient/52", "")}, "",
		gateway.Options{Revocations: list, RequireJTI: true})
	r.token = r.sign(t, map[string]any{"fhirUser": "Practitioner/d1", "roles": "clinician", "org": "Organization/o1", "jti": "stolen-1"})
	if got := r.do(t, "GET", "/Observation/o1", ""); got.status == 401 {
		t.Fatalf("before the revocation: %d %s", got.status, got.body)
	}
	before := len(r.fhir.reached())
	if _, err := list.RevokeToken(context.Background(), access.Revocation{JTI: "stolen-1", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := r.do(t, "GET", "/Observation/o1", ""); got.status != 401 || !strings.Contains(got.body, `"code":"UNAUTHENTICATED"`) {
		t.Errorf("revoked token: %d %s, want 401 UNAUTHENTICATED", got.status, got.body)
	}
	noJTI := r.sign(t, map[string]any{"fhirUser": "Practitioner/d1", "roles": "clinician", "org": "Organization/o1"})
	if got := r.do(t, "GET", "/Observation/o1", "", "Authorization", noJTI); got.status != 401 {
		t.Errorf("token without jti: %d %s, want 401", got.status, got.body)
	}
	if n := len(r.fhir.reached()) - before; n != 0 {
		t.Errorf("refused requests reached the FHIR server %d times", n)
	}
}
