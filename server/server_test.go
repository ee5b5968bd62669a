package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// noConsents is a consent layer for a store without any consent.
type noConsents = testkit.NoConsents

// startServer serves the reference bundle on a free loopback port and
// returns its base URL.
func startServer(t *testing.T, withBundle bool) string {
	t.Helper()
	eng := engine.New(noConsents{})
	if withBundle {
		b, err := engine.LoadBundle(policies.FS)
		if err != nil {
			t.Fatal(err)
		}
		eng.Activate(b)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	return serveSplit(t, server.New(eng, v))
}

// h2cClient speaks cleartext HTTP/2 only.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
}

// pinnedRequest is a request with every field set. Its context.time is
// the test's start: a server refuses a time far from its clock.
var pinnedRequest = strings.Replace(pinnedRequestAt, "NOW", time.Now().UTC().Format(time.RFC3339), 1)

const pinnedRequestAt = `{"subject": {"id": "Practitioner/p1", "kind": "practitioner", "identifiers": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "123"}],
  "roles": ["clinician"], "organization": "Organization/o1", "organizationIdentifiers": [{"system": "urn:oid:2.16.840.1.113883.4.4", "value": "99"}],
  "scopes": ["user/Observation.rs"], "clientId": "portal"},
 "action": "read",
 "resource": {"type": "Observation", "id": "o1", "patient": "Patient/52",
  "securityLabels": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}],
  "codes": [{"system": "http://loinc.org", "code": "1234-5"}], "categories": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}],
  "organization": "Organization/o1", "author": "Practitioner/x", "date": "2020-01-01T00:00:00Z"},
 "purposeOfUse": "TREAT",
 "context": {"time": "NOW", "breakGlassReason": "", "ip": "10.1.2.3", "networkZone": "clinic", "deviceTrust": "managed", "correlationId": "c-1"}}`

func postJSON(t *testing.T, client *http.Client, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response %q is not JSON: %v", raw, err)
	}
	return resp.StatusCode, out
}

func TestCheckConnectJSON(t *testing.T) {
	t.Parallel()
	base := startServer(t, true)
	for name, client := range map[string]*http.Client{"http1": {Timeout: 10 * time.Second}, "h2c": h2cClient()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			status, out := postJSON(t, client, base+"/chaperone.v1.DecisionService/Check", pinnedRequest)
			if status != http.StatusOK {
				t.Fatalf("status %d: %v", status, out)
			}
			if out["decision"] != "DECISION_ALLOW" {
				t.Fatalf("decision = %v in %v", out["decision"], out)
			}
			if out["decisionId"] == "" || out["bundleRevision"] == "" || out["cacheTtl"] == nil {
				t.Errorf("response lacks decisionId, bundleRevision or cacheTtl: %v", out)
			}
			reasons := out["reasons"].([]any)
			if reasons[0].(map[string]any)["policyId"] != "clinician-read-clinical-own-org" {
				t.Errorf("reasons = %v", reasons)
			}
		})
	}
}

func TestCheckGRPC(t *testing.T) {
	t.Parallel()
	base := startServer(t, true)
	for name, opts := range map[string][]connect.ClientOption{
		"grpc":     {connect.WithGRPC()},
		"grpc-web": {connect.WithGRPCWeb()},
		"connect":  nil,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, opts...)
			req := &chaperonev1.CheckRequest{
				Subject:      &chaperonev1.Subject{Kind: "patient", Id: "Patient/52", Roles: []string{"patient"}},
				Action:       "read",
				Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o9", Patient: "Patient/52"},
				PurposeOfUse: "PATRQT",
			}
			resp, err := client.Check(context.Background(), connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Msg.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				t.Fatalf("got %v", resp.Msg)
			}
			req.Resource.Patient = "Patient/53"
			resp, err = client.Check(context.Background(), connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Msg.GetDecision() != chaperonev1.Decision_DECISION_DENY || resp.Msg.GetReasons()[0].GetCode() != "TENANT_MISMATCH" {
				t.Fatalf("other patient's record: got %v", resp.Msg)
			}
		})
	}
}

func TestBatchCheck(t *testing.T) {
	t.Parallel()
	base := startServer(t, true)
	client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, connect.WithGRPC())
	mk := func(patient string) *chaperonev1.CheckRequest {
		return &chaperonev1.CheckRequest{
			Subject:      &chaperonev1.Subject{Kind: "patient", Id: "Patient/52", Roles: []string{"patient"}},
			Action:       "read",
			Resource:     &chaperonev1.Resource{Type: "Observation", Patient: patient},
			PurposeOfUse: "PATRQT",
		}
	}
	batch := &chaperonev1.BatchCheckRequest{Requests: []*chaperonev1.CheckRequest{mk("Patient/52"), mk("Patient/1"), mk("Patient/52")}}
	resp, err := client.BatchCheck(context.Background(), connect.NewRequest(batch))
	if err != nil {
		t.Fatal(err)
	}
	want := []chaperonev1.Decision{chaperonev1.Decision_DECISION_ALLOW, chaperonev1.Decision_DECISION_DENY, chaperonev1.Decision_DECISION_ALLOW}
	if len(resp.Msg.GetResponses()) != len(want) {
		t.Fatalf("%d responses", len(resp.Msg.GetResponses()))
	}
	for i, r := range resp.Msg.GetResponses() {
		if r.GetDecision() != want[i] {
			t.Errorf("response %d = %v, want %v", i, r.GetDecision(), want[i])
		}
	}

	tooMany := &chaperonev1.BatchCheckRequest{}
	for range 1001 {
		tooMany.Requests = append(tooMany.Requests, mk("Patient/52"))
	}
	bad := mk("Patient/52")
	bad.Action = "steal"
	for name, tc := range map[string]struct {
		req   *chaperonev1.BatchCheckRequest
		field string
	}{
		"empty":        {&chaperonev1.BatchCheckRequest{}, "requests"},
		"over 1000":    {tooMany, "requests"},
		"invalid item": {&chaperonev1.BatchCheckRequest{Requests: []*chaperonev1.CheckRequest{mk("Patient/52"), bad}}, "requests[1].action"},
	} {
		_, err := client.BatchCheck(context.Background(), connect.NewRequest(tc.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want invalid_argument naming %q", name, err, tc.field)
		}
	}
}

func TestCheckInvalidArgument(t *testing.T) {
	t.Parallel()
	base := startServer(t, true)
	var pinned map[string]any
	if err := json.Unmarshal([]byte(pinnedRequest), &pinned); err != nil {
		t.Fatal(err)
	}
	longList := make([]any, 33)
	for i := range longList {
		longList[i] = "r"
	}
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		field string
	}{
		{"subject missing", func(m map[string]any) { delete(m, "subject") }, "subject"},
		{"subject.id empty", func(m map[string]any) { sub(m, "subject")["id"] = "" }, "subject.id"},
		{"subject.id too long", func(m map[string]any) { sub(m, "subject")["id"] = strings.Repeat("x", 300) }, "subject.id"},
		{"subject.kind unknown", func(m map[string]any) { sub(m, "subject")["kind"] = "robot" }, "subject.kind"},
		{"subject.roles too many", func(m map[string]any) { sub(m, "subject")["roles"] = longList }, "subject.roles"},
		{"subject.roles empty item", func(m map[string]any) { sub(m, "subject")["roles"] = []any{""} }, "subject.roles[0]"},
		{"subject.identifiers value empty", func(m map[string]any) {
			sub(m, "subject")["identifiers"] = []any{map[string]any{"system": "s", "value": ""}}
		}, "subject.identifiers[0].value"},
		{"action missing", func(m map[string]any) { delete(m, "action") }, "action"},
		{"action unknown", func(m map[string]any) { m["action"] = "steal" }, "action"},
		{"resource missing", func(m map[string]any) { delete(m, "resource") }, "resource"},
		{"resource.type missing", func(m map[string]any) { delete(sub(m, "resource"), "type") }, "resource.type"},
		{"resource.type lower case", func(m map[string]any) { sub(m, "resource")["type"] = "observation" }, "resource.type"},
		{"resource.type with digits", func(m map[string]any) { sub(m, "resource")["type"] = "Obs3" }, "resource.type"},
		{"resource.securityLabels code empty", func(m map[string]any) {
			sub(m, "resource")["securityLabels"] = []any{map[string]any{"system": "s"}}
		}, "resource.securityLabels[0].code"},
		{"purposeOfUse missing", func(m map[string]any) { delete(m, "purposeOfUse") }, "purposeOfUse"},
		{"purposeOfUse lower case", func(m map[string]any) { m["purposeOfUse"] = "treat" }, "purposeOfUse"},
		{"purposeOfUse too long", func(m map[string]any) { m["purposeOfUse"] = strings.Repeat("T", 40) }, "purposeOfUse"},
		{"context.ip invalid", func(m map[string]any) { sub(m, "context")["ip"] = "10.1.2" }, "context.ip"},
		{"context.breakGlassReason too long", func(m map[string]any) { sub(m, "context")["breakGlassReason"] = strings.Repeat("x", 2000) }, "context.breakGlassReason"},
		{"context.time not a timestamp", func(m map[string]any) { sub(m, "context")["time"] = "yesterday" }, "Timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := deepCopy(pinned)
			tt.edit(m)
			body, _ := json.Marshal(m)
			resp, err := http.Post(base+"/chaperone.v1.DecisionService/Check", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct{ Code, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if out.Code != "invalid_argument" || !strings.Contains(out.Message, tt.field) {
				t.Fatalf("got %d %+v, want invalid_argument naming %q", resp.StatusCode, out, tt.field)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	for _, withBundle := range []bool{true, false} {
		base := startServer(t, withBundle)
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantHTTP, wantGRPC := http.StatusOK, healthpb.HealthCheckResponse_SERVING
		if !withBundle {
			wantHTTP, wantGRPC = http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING
		}
		if resp.StatusCode != wantHTTP {
			t.Errorf("bundle=%v: /healthz = %d, want %d", withBundle, resp.StatusCode, wantHTTP)
		}
		if status := grpcHealth(t, base); status != wantGRPC {
			t.Errorf("bundle=%v: grpc health = %v, want %v", withBundle, status, wantGRPC)
		}
		if !withBundle {
			client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base)
			r, err := client.Check(context.Background(), connect.NewRequest(&chaperonev1.CheckRequest{
				Subject: &chaperonev1.Subject{Id: "Patient/1"}, Action: "read",
				Resource: &chaperonev1.Resource{Type: "Patient"}, PurposeOfUse: "TREAT",
			}))
			if err != nil {
				t.Fatal(err)
			}
			if r.Msg.GetDecision() != chaperonev1.Decision_DECISION_DENY || r.Msg.GetReasons()[0].GetCode() != "NO_BUNDLE" {
				t.Errorf("without a bundle: %v", r.Msg)
			}
		}
	}
}

func sub(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func deepCopy(m map[string]any) map[string]any {
	raw, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// grpcHealth asks the standard health service with grpc-go, a second,
// independent implementation of the gRPC protocol.
func grpcHealth(t *testing.T, base string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "chaperone.v1.DecisionService"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus()
}

func TestReflection(t *testing.T) {
	t.Parallel()
	base := startServer(t, true)
	conn, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
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
	for _, want := range []string{"chaperone.v1.DecisionService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}
