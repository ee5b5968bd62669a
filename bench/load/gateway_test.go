package load

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// benchGateway is the gateway of WriteGatewayFiles and the gateway
// package's own reading of that file, which checks the tokens.
func benchGateway(t *testing.T) (*Gateway, *gateway.Gateway) {
	t.Helper()
	gwFile, keyFile, err := WriteGatewayFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g, err := LoadGateway(gwFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.Load(gwFile)
	if err != nil {
		t.Fatal(err)
	}
	door, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = door.Close(context.Background()) })
	return g, door
}

// TestGatewayRoundTrip: every request of the gateway scenario, rendered as
// the HTTP request a gateway asks about, is mapped by the gateway package
// (token verified, claims read, URL mapped) back to the same CheckRequest.
func TestGatewayRoundTrip(t *testing.T) {
	t.Parallel()
	g, door := benchGateway(t)
	tok, err := g.tokens(time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := LookupScenario("gateway")
	extra := []*chaperonev1.CheckRequest{{
		Subject: &chaperonev1.Subject{Id: "Patient/52", Kind: "patient", Scopes: []string{"patient/Observation.rs"}, LaunchPatient: "Patient/52"},
		Action:  "update", Resource: &chaperonev1.Resource{Type: "Observation", Id: "o2"},
		PurposeOfUse: "PATRQT", Context: &chaperonev1.Context{Phase: "request"},
	}}
	for i, r := range append(sc.Requests, extra...) {
		h, err := g.http(tok, r)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		hdr := http.Header{"Authorization": {h.Authorization}, h.PurposeHeader: {h.Purpose}}
		got, err := door.Map(context.Background(), h.Method, h.URI, hdr)
		if err != nil {
			t.Fatalf("request %d: %s %s: %v", i, h.Method, h.URI, err)
		}
		if got.Check.String() != r.String() {
			t.Errorf("request %d: %s %s maps to\n%v\nwant\n%v", i, h.Method, h.URI, got.Check, r)
		}
	}
}

// TestGatewayRefuses: a request a door cannot carry is an error naming
// why, not a request about something else.
func TestGatewayRefuses(t *testing.T) {
	t.Parallel()
	g, _ := benchGateway(t)
	tok, err := g.tokens(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := func() *chaperonev1.CheckRequest {
		return &chaperonev1.CheckRequest{
			Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner"},
			Action:  "read", Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1"},
			PurposeOfUse: "TREAT", Context: &chaperonev1.Context{Phase: "request"},
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*chaperonev1.CheckRequest)
	}{
		{"resource phase", func(r *chaperonev1.CheckRequest) { r.Context = nil }},
		{"labels", func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = []*chaperonev1.Coding{{System: confidentiality, Code: "R"}}
		}},
		{"read with a patient", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/52" }},
		{"search by id", func(r *chaperonev1.CheckRequest) { r.Action = "search" }},
		{"vread", func(r *chaperonev1.CheckRequest) { r.Action = "vread" }},
		{"export", func(r *chaperonev1.CheckRequest) { r.Action = "export" }},
		{"unknown type", func(r *chaperonev1.CheckRequest) { r.Resource.Type = "Nope" }},
		{"id with a slash", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "a/b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := base()
			tc.edit(r)
			if _, err := g.http(tok, r); err == nil {
				t.Errorf("%v: no error", r)
			} else if !errors.Is(err, errNotGatewayRequest) {
				t.Errorf("error %v is not errNotGatewayRequest", err)
			}
		})
	}
	if _, err := g.http(tok, base()); err != nil {
		t.Fatalf("base request: %v", err)
	}
	if _, err := g.tokens(time.Now(), 25*time.Hour); err == nil || !strings.Contains(err.Error(), "maxLifetime") {
		t.Errorf("tokens for 25h: %v, want an error naming maxLifetime", err)
	}
}
