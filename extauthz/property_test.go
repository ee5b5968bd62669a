package extauthz_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/fhirrest"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

// Pieces of request targets: mappable ones and every kind fhirrest refuses.
var (
	segments = []string{"Observation", "Patient", "51", "o1", "_search", "_history", "1", "$everything", "$graphql",
		"observation", "Nonsense", "%2F", "a%2Fb", "%2E%2E", "..", ".", "", "Condition", "con-1", "*", "metadata", "$export", "a;b"}
	queries = []string{"", "", "", "patient=Patient/51", "subject=Patient/51", "patient=Patient/52", "_has:Observation:patient:code=1",
		"subject.name=x", "_include=*", "_include=Observation:patient", "patient=Patient%252F51", "_filter=x", "_id=51",
		"patient:missing=true", "patient=Patient/51&patient=Patient/52", "code=1#x", "_method=DELETE"}
	methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "TRACE"}
)

// The door never allows what fhirrest refuses, nor anything without the
// end user's valid token, and what it allows is decided as fhirrest maps
// it (action, type, id and patient of the decided request).
func TestNeverAllowsWhatCannotBeMapped(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	rec := &recorder{}
	srv := server.New(eng, v, server.WithRecorder(rec))
	door := extauthz.New(iss.mapper(t, gateway.PhaseProxy), srv, nil)
	fm, err := fhirrest.New("/fhir")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{iss.endUser(t, "Practitioner/p1", "clinician"), iss.endUser(t, "Practitioner/n1", "nurse"), "", "Bearer x.y.z", "Basic dXNlcg==", "Bearer " + iss.token(t, "envoy")}
	allowed := 0
	property := func(t *rapid.T) {
		n := rapid.IntRange(0, 4).Draw(t, "segments")
		path := "/fhir"
		if rapid.IntRange(0, 9).Draw(t, "base") == 0 {
			path = rapid.SampledFrom([]string{"/FHIR", "/fhir/", "", "/other", "//fhir"}).Draw(t, "altBase")
		}
		if rapid.Bool().Draw(t, "wellFormed") {
			// Mostly mappable targets, so that allows are drawn too.
			path += "/" + rapid.SampledFrom([]string{"Observation", "Condition", "Observation/o1", "Condition/con-1", "Patient/51/Observation", "Observation/_search"}).Draw(t, "target")
			n = rapid.IntRange(0, 1).Draw(t, "extra")
		}
		for range n {
			path += "/" + rapid.SampledFrom(segments).Draw(t, "segment")
		}
		query := rapid.SampledFrom(queries).Draw(t, "query")
		uri := path
		if query != "" {
			uri += "?" + query
		}
		method := rapid.SampledFrom(append([]string{"GET", "GET", "GET"}, methods...)).Draw(t, "method")
		tok := rapid.IntRange(0, len(tokens)-1).Draw(t, "token")
		if rapid.Bool().Draw(t, "clinician") {
			tok = 0
		}
		headers := map[string]string{}
		if tokens[tok] != "" {
			headers["authorization"] = tokens[tok]
		}
		before := len(rec.All())
		resp, err := door.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: uri, Headers: headers}},
		}})
		if err != nil {
			t.Fatalf("%s %s: %v", method, uri, err)
		}
		if resp.GetStatus().GetCode() != 0 {
			if resp.GetDeniedResponse() == nil || resp.GetStatus().GetCode() != 7 {
				t.Fatalf("%s %s: %v, want a deny", method, uri, resp)
			}
			return
		}
		allowed++
		if tok > 1 {
			t.Fatalf("%s %s allowed with token %d", method, uri, tok)
		}
		m, err := fm.Map(method, path, query, nil)
		if err != nil {
			t.Fatalf("%s %s allowed, but fhirrest refuses it: %v", method, uri, err)
		}
		recs := rec.All()
		if len(recs) != before+1 {
			t.Fatalf("%d new records, want 1", len(recs)-before)
		}
		got := recs[len(recs)-1].Req
		typ := m.Type
		if m.Capabilities {
			typ = "CapabilityStatement"
		}
		if got.GetAction() != string(m.Action) || got.GetResource().GetType() != typ || got.GetResource().GetId() != m.ID ||
			got.GetResource().GetPatient() != m.Patient || got.GetContext().GetPhase() != "request" {
			t.Fatalf("%s %s decided as %v, mapped as %+v", method, uri, got, m)
		}
		if !strings.HasPrefix(uri, "/fhir/") || method != strings.ToUpper(method) || method == http.MethodOptions {
			t.Fatalf("%s %s allowed", method, uri)
		}
	}
	// Allows are a few percent of the draws: run again (boundedly) until
	// some were drawn, so that the property is exercised on them.
	for i := 0; i < 20 && allowed == 0; i++ {
		rapid.Check(t, property)
	}
	if allowed == 0 {
		t.Fatal("no request was allowed: the property was never exercised")
	}
}
