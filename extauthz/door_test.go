package extauthz_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
)

func headerOf(hs []*corev3.HeaderValueOption, key string) (string, bool) {
	for _, h := range hs {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// outcomeCodes are the reason codes of an OperationOutcome body.
func outcomeCodes(t *testing.T, body string) []string {
	t.Helper()
	var o struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Details struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	if err := json.Unmarshal([]byte(body), &o); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if o.ResourceType != "OperationOutcome" {
		t.Fatalf("resourceType %q", o.ResourceType)
	}
	var codes []string
	for _, i := range o.Issue {
		for _, c := range i.Details.Coding {
			if c.System != gateway.ReasonSystem {
				t.Errorf("system %q", c.System)
			}
			codes = append(codes, c.Code)
		}
	}
	return codes
}

func TestCheckAllow(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	ts := start(t, iss.mapper(t, gateway.PhaseProxy), nil)
	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
	}{
		{"a compartment search", http.MethodGet, "/fhir/Observation?patient=Patient/51", "",
			map[string]string{":method": "GET", ":path": "/fhir/Observation?patient=Patient/51", ":authority": "fhir.example.org", "authorization": clinician, "x-purpose-of-use": "TREAT", extauthz.HeaderDecisionID: "forged", extauthz.HeaderObligations: "e30"}},
		{"a search in the body (with_request_body)", http.MethodPost, "/fhir/Observation/_search", "patient=Patient/51",
			map[string]string{"authorization": clinician, "content-type": "application/x-www-form-urlencoded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := ts.check(t, "", tc.method, tc.path, tc.headers, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetStatus().GetCode(); got != 0 {
				t.Fatalf("status.code %d, want 0 (%v)", got, resp)
			}
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("no ok_response: %v", resp)
			}
			id, found := headerOf(ok.GetHeaders(), extauthz.HeaderDecisionID)
			if !found || id == "" || id == "forged" {
				t.Errorf("decision id header %q", id)
			}
			enc, _ := headerOf(ok.GetHeaders(), extauthz.HeaderObligations)
			raw, err := base64.RawURLEncoding.DecodeString(enc)
			if err != nil {
				t.Fatalf("obligations %q: %v", enc, err)
			}
			var obl map[string]any
			if err := json.Unmarshal(raw, &obl); err != nil {
				t.Fatalf("obligations %q: %v", raw, err)
			}
			if obl["perEntryCheck"] != true {
				t.Errorf("obligations %v, want perEntryCheck", obl)
			}
			for _, h := range []string{extauthz.HeaderDecisionID, extauthz.HeaderObligations} {
				if !slices.Contains(ok.GetHeadersToRemove(), h) {
					t.Errorf("headers_to_remove %v lacks %s", ok.GetHeadersToRemove(), h)
				}
			}
			n := 0
			for _, rec := range ts.recorder.All() {
				if rec.Resp.GetDecisionId() == id {
					n++
					if rec.Req.GetContext().GetPhase() != "request" || rec.Req.GetResource().GetPatient() != "Patient/51" {
						t.Errorf("recorded request %v", rec.Req)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d records of decision %s, want 1", n, id)
			}
		})
	}
}

func TestCheckDenied(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	ts := start(t, iss.mapper(t, gateway.PhaseProxy), nil)
	none := start(t, iss.mapper(t, gateway.PhaseNone), nil)
	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	nurse := iss.endUser(t, "Practitioner/n1", "nurse")
	for _, tc := range []struct {
		name, method, path string
		none               bool
		headers            map[string]string
		body               string
		status             int
		code               string
		decided            bool
	}{
		{"nothing checks the resource phase behind the gateway", http.MethodGet, "/fhir/Observation?patient=Patient/51", true, map[string]string{"authorization": clinician}, "", 403, gateway.ReasonNoResourceEnforcement, true},
		{"a caller's token as the end user's", http.MethodGet, "/fhir/Observation/o1", false, map[string]string{"authorization": "Bearer " + iss.token(t, "envoy")}, "", 401, gateway.ReasonUnauthenticated, false},
		{"a method override", http.MethodGet, "/fhir/Observation/o1", false, map[string]string{"authorization": clinician, "x-http-method-override": "DELETE"}, "", 403, gateway.ReasonMethodOverride, false},
		{"a role without a permit", http.MethodGet, "/fhir/DocumentReference/doc-1", false, map[string]string{"authorization": nurse}, "", 403, "NO_PERMIT", true},
		{"no end-user token", http.MethodGet, "/fhir/Observation/o1", false, nil, "", 401, "UNAUTHENTICATED", false},
		{"an unknown end-user token", http.MethodGet, "/fhir/Observation/o1", false, map[string]string{"authorization": "Bearer not-a-token"}, "", 401, "UNAUTHENTICATED", false},
		{"an encoded slash in an id", http.MethodGet, "/fhir/Observation/a%2F..%2FPatient", false, map[string]string{"authorization": clinician}, "", 403, "ENCODED_SLASH", false},
		{"an unknown type", http.MethodGet, "/fhir/Nonsense/1", false, map[string]string{"authorization": clinician}, "", 403, "UNKNOWN_TYPE", false},
		{"graphql", http.MethodPost, "/fhir/$graphql", false, map[string]string{"authorization": clinician}, "{}", 403, "GRAPHQL", false},
		{"outside the base", http.MethodGet, "/admin/Observation", false, map[string]string{"authorization": clinician}, "", 403, "OUTSIDE_BASE", false},
		{"a transaction without its body", http.MethodPost, "/fhir", false, map[string]string{"authorization": clinician}, "", 403, "BODY_REQUIRED", false},
		{"a truncated body", http.MethodPost, "/fhir/Observation/_search", false, map[string]string{"authorization": clinician, "x-envoy-auth-partial-body": "true"}, "patient=Patient/51", 403, extauthz.ReasonPartialBody, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := ts
			if tc.none {
				srv = none
			}
			resp, err := srv.check(t, "", tc.method, tc.path, tc.headers, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetStatus().GetCode(); got != 7 {
				t.Fatalf("status.code %d, want 7", got)
			}
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatalf("no denied_response: %v", resp)
			}
			if got := int(d.GetStatus().GetCode()); got != tc.status {
				t.Errorf("HTTP status %d, want %d", got, tc.status)
			}
			if ct, _ := headerOf(d.GetHeaders(), "content-type"); ct != "application/fhir+json" {
				t.Errorf("content-type %q", ct)
			}
			if codes := outcomeCodes(t, d.GetBody()); !slices.Contains(codes, tc.code) {
				t.Errorf("codes %v, want %s", codes, tc.code)
			}
			id, found := headerOf(d.GetHeaders(), extauthz.HeaderDecisionID)
			if found != tc.decided {
				t.Errorf("decision id %q present %v, want %v", id, found, tc.decided)
			}
		})
	}
}

func TestCheckUnmappableNeverAllowed(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	ts := start(t, iss.mapper(t, gateway.PhaseProxy), nil)
	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	// Paths a clinician would be allowed were they mapped loosely.
	for _, path := range []string{
		"/fhir/Observation/%2e%2e/Patient", "/fhir/Observation//o1", "/fhir/./Observation/o1",
		"/fhir/Observation?patient=Patient/51&_has:Observation:patient:code=1", "/fhir/Observation?subject.name=x",
		"/fhir/Observation?patient=Patient%252F51", "/fhir/Observation?_include=*", "/fhir/observation/o1",
		"/fhir/Observation/o1;x", "/FHIR/Observation/o1", "", "*",
	} {
		resp, err := ts.check(t, "", http.MethodGet, path, map[string]string{"authorization": clinician}, "")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if resp.GetStatus().GetCode() != 7 || resp.GetDeniedResponse() == nil || resp.GetOkResponse() != nil {
			t.Errorf("%q: %v, want a deny", path, resp)
		}
	}
	if n := len(ts.recorder.All()); n != 0 {
		t.Errorf("%d records for requests never decided", n)
	}
}

func TestCheckInternalFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	ts := start(t, iss.mapper(t, gateway.PhaseProxy), nil)
	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	_, err := ts.check(t, "", http.MethodGet, "/fhir/Observation/o1", map[string]string{"authorization": clinician, failHeader: "1"}, "")
	if got := grpcstatus.Code(err); got != codes.Unavailable {
		t.Fatalf("code %v (%v), want Unavailable (14)", got, err)
	}
}

func TestCheckAuditsTheCaller(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	clinician := iss.endUser(t, "Practitioner/p1", "clinician")
	ts := start(t, iss.mapper(t, gateway.PhaseProxy), iss.guard(t, callers.AuthzConfig{
		AnyAuthenticated: []string{"grpc.reflection.v1.ServerReflection"},
		Callers: []callers.CallerGrant{
			{Name: "envoy-edge", Subjects: []string{"envoy"}, Allow: []string{extauthz.Service}},
			{Name: "other", Subjects: []string{"other"}, Allow: []string{"chaperone.v1.DecisionService"}},
		},
	}))
	resp, err := ts.check(t, iss.token(t, "envoy"), http.MethodGet, "/fhir/Observation?patient=Patient/51", map[string]string{"authorization": clinician}, "")
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("%v, %v: want an allow", resp, err)
	}
	recs := ts.recorder.All()
	if len(recs) != 1 || recs[0].Caller != "envoy" {
		t.Fatalf("records %+v, want one by the caller envoy", recs)
	}
	id, _ := headerOf(resp.GetOkResponse().GetHeaders(), extauthz.HeaderDecisionID)
	if recs[0].Resp.GetDecisionId() != id {
		t.Errorf("record of decision %s, answer %s", recs[0].Resp.GetDecisionId(), id)
	}

	// A caller not granted the service, and no caller at all, are refused
	// before anything is decided.
	for _, tok := range []string{iss.token(t, "other"), ""} {
		_, err := ts.check(t, tok, http.MethodGet, "/fhir/Observation?patient=Patient/51", map[string]string{"authorization": clinician}, "")
		if c := grpcstatus.Code(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
			t.Errorf("code %v, want a refusal", c)
		}
	}
	if n := len(ts.recorder.All()); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

func TestReflectionListsTheService(t *testing.T) {
	t.Parallel()
	ts := start(t, newIssuer(t).mapper(t, gateway.PhaseProxy), nil)
	stream, err := reflectionv1.NewServerReflectionClient(ts.conn(t)).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, extauthz.Service) {
		t.Fatalf("services %v lack %s", names, extauthz.Service)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: extauthz.Service}}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("no descriptor for %s: %v", extauthz.Service, resp)
	}
}
