package extauthz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

// answer is what a gateway door said, in common terms.
type answer struct {
	Status      int            // HTTP status the client gets (200 for an allow)
	Codes       []string       // reason codes of the OperationOutcome
	Obligations map[string]any // decoded x-chaperone-obligations
	Decided     bool           // a decision id came back
}

func obligationsOf(t *testing.T, enc string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("obligations %q: %v", enc, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("obligations %q: %v", raw, err)
	}
	return m
}

// The ext_authz door and the forward-auth door of one gateway file give
// the same answer to the same request: status, reason codes, obligations,
// and each one audit record when the engine decided.
func TestSameAnswersAsForwardAuth(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	g := iss.gateway(t, gateway.PhaseProxy)
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	rec := &recorder{}
	hs := server.New(eng, v, server.WithRecorder(rec),
		server.WithDoor(func(s *server.Server) []server.Route {
			d := gateway.NewDoor(g, s, nil)
			return []server.Route{{Pattern: d.Pattern(), Procedure: gateway.ForwardProcedure, Handler: d, EndUserToken: true}}
		}),
		server.WithGRPCDoor(extauthz.Service, func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
			return extauthz.New(extauthz.FromGateway(g), s, nil).Handler
		}),
	).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	envoy := authv3.NewAuthorizationClient(cc)
	client := &http.Client{Timeout: 10 * time.Second}

	viaEnvoy := func(method, uri string, h map[string]string) answer {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := envoy.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: uri, Headers: h}},
		}})
		if err != nil {
			t.Fatalf("%s %s: %v", method, uri, err)
		}
		if ok := resp.GetOkResponse(); ok != nil {
			enc, _ := headerOf(ok.GetHeaders(), extauthz.HeaderObligations)
			id, _ := headerOf(ok.GetHeaders(), extauthz.HeaderDecisionID)
			return answer{Status: 200, Obligations: obligationsOf(t, enc), Decided: id != ""}
		}
		d := resp.GetDeniedResponse()
		id, _ := headerOf(d.GetHeaders(), extauthz.HeaderDecisionID)
		return answer{Status: int(d.GetStatus().GetCode()), Codes: outcomeCodes(t, d.GetBody()), Decided: id != ""}
	}
	viaForward := func(method, uri string, h map[string]string) answer {
		req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+gateway.ForwardPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Original-Method", method)
		req.Header.Set("X-Original-URI", uri)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		a := answer{Status: resp.StatusCode, Decided: resp.Header.Get(gateway.HeaderDecisionID) != ""}
		if resp.StatusCode == http.StatusOK {
			a.Obligations = obligationsOf(t, resp.Header.Get(gateway.HeaderObligations))
		} else {
			a.Codes = outcomeCodes(t, string(body))
		}
		return a
	}

	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	nurse := iss.endUser(t, "Practitioner/n1", "nurse")
	decided, allowed := 0, 0
	for _, tok := range []string{clinician, nurse, "", "Bearer x.y.z", "Bearer " + iss.token(t, "envoy")} {
		for _, method := range []string{"GET", "POST", "DELETE", "PUT"} {
			for _, uri := range []string{
				"/fhir/Observation?patient=Patient/51", "/fhir/Observation/o1", "/fhir/Condition/con-1", "/fhir/DocumentReference/d1",
				"/fhir/Patient/51/Observation", "/fhir/Claim/c1", "/fhir/metadata", "/fhir/Observation/a%2Fb", "/fhir/$graphql",
				"/fhir/Observation?_has:Observation:patient:code=1", "/fhir", "/other/Observation", "/fhir/Observation?patient=Patient/51&_include=*",
			} {
				h := map[string]string{}
				if tok != "" {
					h["authorization"] = tok
				}
				if strings.Contains(uri, "Claim") {
					h["x-purpose-of-use"] = "HPAYMT"
				}
				e, f := viaEnvoy(method, uri, h), viaForward(method, uri, h)
				if !reflect.DeepEqual(e, f) {
					t.Errorf("%s %s (token %d chars): ext_authz %+v, forward-auth %+v", method, uri, len(tok), e, f)
				}
				if e.Decided {
					decided++
				}
				if e.Status == http.StatusOK {
					allowed++
				}
			}
		}
	}
	if decided == 0 || allowed == 0 {
		t.Fatalf("%d decided, %d allowed: the comparison needs both", decided, allowed)
	}
	if n := len(rec.All()); n != 2*decided {
		t.Errorf("%d records for %d decisions through each door, want %d", n, decided, 2*decided)
	}
}
