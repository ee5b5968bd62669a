package extauthz_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// BenchmarkServerCost is the server's own cost of one decision (handler,
// codec, mapping, engine, audit record; no network and no client) through
// the ext_authz door and through a Connect JSON Check of the CheckRequest
// the door decides, in one run: compare the two with benchstat.
func BenchmarkServerCost(b *testing.B) {
	iss := newIssuer(b)
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
	m := iss.mapper(b, gateway.PhaseProxy)
	door := func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
		return extauthz.New(m, s, nil).Handler
	}
	srv := server.New(eng, v, server.WithRecorder(discard{}), server.WithGRPCDoor(extauthz.Service, door))

	envoyReq, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/fhir/Observation?patient=Patient/51",
			Headers: map[string]string{"authorization": iss.endUser(b, "Practitioner/p1", "clinician"), "x-purpose-of-use": "TREAT", "user-agent": "curl/8", "accept": "application/fhir+json"},
		}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	checkReq, err := protojson.Marshal(&chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "search",
		Resource:     &chaperonev1.Resource{Type: "Observation", Patient: "Patient/51"},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{Phase: "request"},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, path, contentType string
		body                    []byte
	}{
		{"door=ext-authz", extauthz.CheckProcedure, "application/proto", envoyReq},
		{"door=check-json", "/chaperone.v1.DecisionService/Check", "application/json", checkReq},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Both ask the same allowed decision.
			r := httptest.NewRequest(http.MethodPost, bc.path, bytes.NewReader(bc.body))
			r.Header.Set("Content-Type", bc.contentType)
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			if bc.contentType == "application/proto" {
				var resp authv3.CheckResponse
				if err := proto.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.GetStatus().GetCode() != 0 {
					b.Fatalf("ext_authz answer %v (%v), want an allow", &resp, err)
				}
			} else if !bytes.Contains(w.Body.Bytes(), []byte("DECISION_ALLOW")) {
				b.Fatalf("Check answer %s, want an allow", w.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, bc.path, bytes.NewReader(bc.body))
				r.Header.Set("Content-Type", bc.contentType)
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
