package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"

	"github.com/chaperone-pdp/chaperone/gateway"
)

// FuzzAttributes feeds the door's fetch of a target whatever a FHIR server
// might answer: never a panic; a body that does not read as the resource
// asked for is refused TARGET_INVALID or TARGET_UNAVAILABLE; a request the
// door resolves carries only a plain Patient/id and Organization/id. Run
// it with go test -fuzz FuzzAttributes ./gateway.
func FuzzAttributes(f *testing.F) {
	k := newKeys(f)
	var body atomic.Pointer[string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(*body.Load()))
	}))
	f.Cleanup(srv.Close)
	cfg, err := gateway.Parse([]byte(k.config(gateway.PhaseProxy) + "tenantTagSystem: " + tenantSystem + "\nattributes:\n  fhirServer: " + srv.URL + "\n"))
	if err != nil {
		f.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = g.Close(context.Background()) })
	h := http.Header{"Authorization": {"Bearer " + k.sign(f, "ES256", firstPartyClinician())}}
	for _, seed := range resources {
		f.Add(seed, false)
	}
	f.Add(`{"resourceType":"Patient","id":"51","managingOrganization":{"reference":"Organization/o1"}}`, true)
	f.Add(`{"resourceType":"Patient","id":"51","managingOrganization":{"reference":"Organization/../o1"}}`, true)
	f.Add(`{"resourceType":"Observation","id":"o1","subject":[{"reference":"Patient/51"}]}`, false)
	f.Add(`{"resourceType":"Observation","id":"o1","category":{"coding":[{"code":"x"}]},"code":{"coding":[{"code":""}]}}`, false)
	plain := regexp.MustCompile(`^(|Patient/[A-Za-z0-9.-]{1,64})$`)
	org := regexp.MustCompile(`^(|Organization/[A-Za-z0-9.-]{1,64})$`)
	f.Fuzz(func(t *testing.T, b string, patient bool) {
		body.Store(&b)
		uri := "/fhir/Observation/o1"
		if patient {
			uri = "/fhir/Patient/51"
		}
		req, err := g.Map(context.Background(), "GET", uri, h)
		if err != nil {
			var ref *gateway.Refusal
			if !errors.As(err, &ref) || ref.Status != 403 || (ref.Code != gateway.ReasonTargetInvalid && ref.Code != gateway.ReasonTargetUnavailable) {
				t.Fatalf("%q: %v", b, err)
			}
			return
		}
		res := req.Check.GetResource()
		if !req.Resolved {
			t.Fatalf("%q: a 200 answer not resolved", b)
		}
		if !plain.MatchString(res.GetPatient()) || !org.MatchString(res.GetOrganization()) {
			t.Fatalf("%q: resolved as %v", b, res)
		}
		if patient && res.GetPatient() != "Patient/51" {
			t.Fatalf("%q: a Patient outside its own compartment: %v", b, res)
		}
		if req.Check.GetContext().GetPhase() != gateway.PhaseResource {
			t.Fatalf("%q: phase %q", b, req.Check.GetContext().GetPhase())
		}
	})
}
