package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// BenchmarkServerCost is the server's own cost of one decision (handler,
// token check, mapping, engine, audit record; no network, no client)
// through the forward-auth door and through a Connect JSON Check of the
// CheckRequest the door decides, in one run: compare them with benchstat.
func BenchmarkServerCost(b *testing.B) {
	k := newKeys(b)
	g := k.gateway(b, gateway.PhaseProxy)
	eng := engine.New(noConsents{})
	bundle, err := engine.LoadBundle(policies.FS)
	if err != nil {
		b.Fatal(err)
	}
	eng.Activate(bundle)
	v, err := validation.New()
	if err != nil {
		b.Fatal(err)
	}
	door := func(s *server.Server) []server.Route {
		d := gateway.NewDoor(g, s, nil)
		return []server.Route{{Pattern: d.Pattern(), Procedure: gateway.ForwardProcedure, Handler: d, EndUserToken: true}}
	}
	srv := server.New(eng, v, server.WithRecorder(&recorder{}), server.WithDoor(door))
	c := clinician()
	delete(c, "client_id")
	user := "Bearer " + k.sign(b, "ES256", c)
	checkReq, err := protojson.Marshal(&chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1", Scopes: []string{"user/*.rs"}},
		Action:       "search",
		Resource:     &chaperonev1.Resource{Type: "Observation", Patient: "Patient/51"},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{Phase: "request"},
	})
	if err != nil {
		b.Fatal(err)
	}
	forwardReq := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, gateway.ForwardPath, nil)
		r.Header.Set("Authorization", user)
		r.Header.Set("X-Original-Method", "GET")
		r.Header.Set("X-Original-URI", "/fhir/Observation?patient=Patient/51")
		r.Header.Set("User-Agent", "curl/8")
		r.Header.Set("Accept", "application/fhir+json")
		return r
	}
	checkHTTP := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/chaperone.v1.DecisionService/Check", bytes.NewReader(checkReq))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	for _, bc := range []struct {
		name string
		req  func() *http.Request
		ok   func(*httptest.ResponseRecorder) bool
	}{
		{"door=forward", forwardReq, func(w *httptest.ResponseRecorder) bool { return w.Header().Get(gateway.HeaderDecisionID) != "" }},
		{"door=check-json", checkHTTP, func(w *httptest.ResponseRecorder) bool {
			return bytes.Contains(w.Body.Bytes(), []byte("DECISION_ALLOW"))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Both ask the same allowed decision.
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, bc.req())
			if w.Code != http.StatusOK || !bc.ok(w) {
				b.Fatalf("%d %s, want an allow", w.Code, w.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, bc.req())
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
