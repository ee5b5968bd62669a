package extauthz_test

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/fhirrest"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/policies"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// FuzzCheck: whatever Envoy sends, the door answers without a panic, with
// an allow or a deny (never a failure: the rules can run), and allows only
// what fhirrest maps. Run it with go test -fuzz FuzzCheck ./extauthz.
func FuzzCheck(f *testing.F) {
	iss := newIssuer(f)
	eng := engine.New(noConsents{})
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		f.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		f.Fatal(err)
	}
	door := extauthz.New(iss.mapper(f, gateway.PhaseProxy), server.New(eng, v, server.WithRecorder(discard{})), nil)
	fm, err := fhirrest.New("/fhir")
	if err != nil {
		f.Fatal(err)
	}
	clinician := iss.endUser(f, "Practitioner/p1", "clinician")
	for _, seed := range []struct {
		method, path, body, header string
		token                      bool
	}{
		{"GET", "/fhir/Observation?patient=Patient/51", "", "", true},
		{"POST", "/fhir/Observation/_search", "patient=Patient/51", "content-type", true},
		{"GET", "/fhir/Observation/a%2Fb", "", "", true},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"batch"}`, "", true},
		{"GET", "/fhir/Patient/51/Observation", "", "x-http-method-override", true},
		{"GET", "/fhir/Observation/o1", "", "", false},
		{"GET", "\x00/\xff", "\xff", ":path", true},
	} {
		f.Add(seed.method, seed.path, seed.body, seed.header, seed.token)
	}
	f.Fuzz(func(t *testing.T, method, path, body, header string, token bool) {
		h := map[string]string{}
		if header != "" {
			h[strings.ToLower(header)] = "1"
		}
		if token {
			h["authorization"] = clinician
		}
		resp, err := door.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Body: body, Headers: h}},
		}})
		if err != nil {
			t.Fatalf("%q %q: %v", method, path, err)
		}
		switch resp.GetStatus().GetCode() {
		case 0:
			p, q, _ := strings.Cut(path, "?")
			var bb []byte
			if body != "" {
				bb = []byte(body)
			}
			if _, err := fm.MapAll(method, p, q, bb); err != nil || !token {
				t.Fatalf("%q %q allowed (token %v), fhirrest: %v", method, path, token, err)
			}
		case 7:
			if resp.GetDeniedResponse() == nil {
				t.Fatalf("%q %q: a deny without denied_response", method, path)
			}
		default:
			t.Fatalf("%q %q: status %d", method, path, resp.GetStatus().GetCode())
		}
	})
}
