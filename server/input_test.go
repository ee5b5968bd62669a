package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// inputClock is the engine's clock in these tests: a Tuesday, 11:00 in the
// reference bundle's time zone.
var inputClock = time.Date(2025, 6, 3, 15, 0, 0, 0, time.UTC)

// startInputServer serves the reference bundle with the fixture consents
// (Patient/52 permit, Patient/53 opt-out, Patient/54 delegation) and the
// consent and access services, on a free loopback port.
func startInputServer(t testing.TB) string {
	t.Helper()
	consents := consentstore.NewMemory()
	if _, err := consents.Load(context.Background(), "../policies/fixtures/consents"); err != nil {
		t.Fatal(err)
	}
	grants := access.NewMemory()
	eng := engine.New(engine.StoreConsents(consents), engine.WithGrants(grants), engine.WithAgreements(grants),
		engine.WithClock(func() time.Time { return inputClock }))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	return serveSplit(t, server.New(eng, v,
		server.WithConsentService(server.NewConsentService(consents)),
		server.WithAccessService(server.NewAccessService(grants)),
	))
}

// transports are the ways a typed client reaches Check: Connect with JSON
// and with protobuf, gRPC with protobuf and with JSON.
var transports = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
	{"connect+proto", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpc+json", []connect.ClientOption{connect.WithGRPC(), connect.WithProtoJSON()}},
}

// requestB is the base request: a clinician of Organization/o1
// reading an Observation of Patient/52 (general permit) in its own
// organization, for treatment.
func requestB() *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "obs1", Patient: "Patient/52", Organization: "Organization/o1"},
		PurposeOfUse: "TREAT",
	}
}

// TestInvalidInputEveryTransport: a respelt reference, a code with
// whitespace, a short break-glass reason is invalid_argument naming the
// field, over every transport, never a decision.
func TestInvalidInputEveryTransport(t *testing.T) {
	t.Parallel()
	base := startInputServer(t)
	label := func(sys, code string) func(*chaperonev1.CheckRequest) {
		return func(r *chaperonev1.CheckRequest) {
			r.Resource.SecurityLabels = []*chaperonev1.Coding{{System: sys, Code: code}}
		}
	}
	cases := []struct {
		name  string
		edit  func(*chaperonev1.CheckRequest)
		field string
	}{
		{"patient trailing space", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53 " }, "resource.patient"},
		{"patient leading space", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = " Patient/53" }, "resource.patient"},
		{"patient lower-case type", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "patient/53" }, "resource.patient"},
		{"patient upper-case type", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "PATIENT/53" }, "resource.patient"},
		{"patient query", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53?" }, "resource.patient"},
		{"patient fragment", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53#" }, "resource.patient"},
		{"patient NUL", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53\x00" }, "resource.patient"},
		{"patient slash", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53/" }, "resource.patient"},
		{"patient bare id", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "52" }, "resource.patient"},
		{"patient absolute", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "https://fhir.example/Patient/53" }, "resource.patient"},
		{"patient Cyrillic", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Pаtient/53" }, "resource.patient"},
		{"patient another type", func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Group/53" }, "resource.patient"},
		{"subject.id empty", func(r *chaperonev1.CheckRequest) { r.Subject.Id = "" }, "subject.id"},
		{"subject.id bare", func(r *chaperonev1.CheckRequest) { r.Subject.Id = "p1" }, "subject.id"},
		{"subject.id lower-case", func(r *chaperonev1.CheckRequest) { r.Subject.Id = "practitioner/p1" }, "subject.id"},
		{"subject.organization lower-case", func(r *chaperonev1.CheckRequest) { r.Subject.Organization = "organization/o1" }, "subject.organization"},
		{"subject.organization space", func(r *chaperonev1.CheckRequest) { r.Subject.Organization = "Organization/o1 " }, "subject.organization"},
		{"subject.launchPatient query", func(r *chaperonev1.CheckRequest) { r.Subject.LaunchPatient = "Patient/52?" }, "subject.launchPatient"},
		{"resource.organization NUL", func(r *chaperonev1.CheckRequest) { r.Resource.Organization = "Organization/o1\x00" }, "resource.organization"},
		{"resource.author space", func(r *chaperonev1.CheckRequest) { r.Resource.Author = "Practitioner/x y" }, "resource.author"},
		{"resource.id space", func(r *chaperonev1.CheckRequest) { r.Resource.Id = "obs1 " }, "resource.id"},
		{"label leading space", label("", " SUD"), "resource.securityLabels[0].code"},
		{"label trailing space", label("", "SUD "), "resource.securityLabels[0].code"},
		{"label inner space", label("", "S UD"), "resource.securityLabels[0].code"},
		{"label no-break space", label("", "SUD\u00a0"), "resource.securityLabels[0].code"},
		{"label system space", label("http://terminology.hl7.org/CodeSystem/v3-ActCode ", "SUD"), "resource.securityLabels[0].system"},
		{"code tab", func(r *chaperonev1.CheckRequest) {
			r.Resource.Codes = []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5\t"}}
		}, "resource.codes[0].code"},
		{"category newline", func(r *chaperonev1.CheckRequest) {
			r.Resource.Categories = []*chaperonev1.Coding{{Code: "laboratory\n"}}
		}, "resource.categories[0].code"},
		{"break-glass reason one space", func(r *chaperonev1.CheckRequest) {
			r.PurposeOfUse = "ETREAT"
			r.Context = &chaperonev1.Context{BreakGlassReason: " "}
		}, "context.breakGlassReason"},
		{"break-glass reason 19 characters", func(r *chaperonev1.CheckRequest) {
			r.PurposeOfUse = "ETREAT"
			r.Context = &chaperonev1.Context{BreakGlassReason: "patient unconscious"}
		}, "context.breakGlassReason"},
		{"break-glass reason padded", func(r *chaperonev1.CheckRequest) {
			r.PurposeOfUse = "ETREAT"
			r.Context = &chaperonev1.Context{BreakGlassReason: "   e m e r g e n c y   "}
		}, "context.breakGlassReason"},
	}
	for _, tr := range transports {
		client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, tr.opts...)
		t.Run(tr.name+"/valid", func(t *testing.T) {
			t.Parallel()
			resp, err := client.Check(context.Background(), connect.NewRequest(requestB()))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Msg.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				t.Fatalf("request B: %v", resp.Msg)
			}
			req := requestB()
			req.PurposeOfUse = "ETREAT"
			req.Context = &chaperonev1.Context{BreakGlassReason: "unconscious patient, checking allergies"}
			if _, err := client.Check(context.Background(), connect.NewRequest(req)); err != nil {
				t.Fatalf("a 39-character reason: %v", err)
			}
		})
		for _, c := range cases {
			t.Run(tr.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				req := requestB()
				c.edit(req)
				resp, err := client.Check(context.Background(), connect.NewRequest(req))
				if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.field) {
					t.Fatalf("got %v, %v; want invalid_argument naming %s", resp.Msg, err, c.field)
				}
				batch := &chaperonev1.BatchCheckRequest{Requests: []*chaperonev1.CheckRequest{requestB(), req}}
				_, err = client.BatchCheck(context.Background(), connect.NewRequest(batch))
				if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "requests[1]."+c.field) {
					t.Fatalf("BatchCheck: %v; want invalid_argument naming requests[1].%s", err, c.field)
				}
			})
		}
	}
}

// TestUnknownJSONFields: a member the message does not have is
// invalid_argument naming its path on every JSON door (Connect POST with
// both JSON content types, Connect GET, gRPC-JSON, gRPC-Web JSON) and
// every service;
// connect-go's own codec would have dropped it.
func TestUnknownJSONFields(t *testing.T) {
	t.Parallel()
	base := startInputServer(t)
	const (
		subject  = `"subject":{"id":"Practitioner/p1","kind":"practitioner","roles":["clinician"],"organization":"Organization/o1"}`
		resource = `"resource":{"type":"Observation","id":"obs1","patient":"Patient/52","organization":"Organization/o1"}`
	)
	check := "/chaperone.v1.DecisionService/Check"
	cases := []struct {
		name, path, body, field string // field "" means valid
	}{
		{"valid", check, `{` + subject + `,"action":"read",` + resource + `,"purposeOfUse":"TREAT"}`, ""},
		{"valid proto names", check, `{` + subject + `,"action":"read",` + resource + `,"purpose_of_use":"TREAT"}`, ""},
		{"securityLabel", check, `{` + subject + `,"action":"read","resource":{"type":"Observation","id":"obs1","patient":"Patient/52","organization":"Organization/o1","securityLabel":[{"code":"SUD"}]},"purposeOfUse":"TREAT"}`, "resource.securityLabel"},
		{"subject.scope", check, `{"subject":{"id":"Practitioner/p1","kind":"practitioner","roles":["clinician"],"organization":"Organization/o1","scope":["patient/*.rs"]},"action":"read",` + resource + `,"purposeOfUse":"TREAT"}`, "subject.scope"},
		{"case of a name", check, `{` + subject + `,"action":"read",` + resource + `,"PurposeOfUse":"TREAT"}`, "PurposeOfUse"},
		{"in a list item", check, `{` + subject + `,"action":"read","resource":{"type":"Observation","securityLabels":[{"code":"N"},{"cod":"SUD"}]},"purposeOfUse":"TREAT"}`, "resource.securityLabels[1].cod"},
		{"context", check, `{` + subject + `,"action":"read",` + resource + `,"purposeOfUse":"TREAT","context":{"breakGlassreason":"unconscious patient, checking allergies"}}`, "context.breakGlassreason"},
		{"null member", check, `{` + subject + `,"action":"read",` + resource + `,"purposeOfUse":"TREAT","consent":null}`, "consent"},
		{"batch item", "/chaperone.v1.DecisionService/BatchCheck", `{"requests":[{` + subject + `,"action":"read",` + resource + `,"purposeOfUse":"TREAT"},{"subject":{"id":"Practitioner/p1","scope":"x"},"action":"read",` + resource + `,"purposeOfUse":"TREAT"}]}`, "requests[1].subject.scope"},
		{"consent list", "/chaperone.v1.ConsentService/List", `{"patient":"Patient/53","patinet":"Patient/52"}`, "patinet"},
		{"grant list", "/chaperone.v1.AccessService/ListBreakGlass", `{"patient":"Patient/53","subjects":"Practitioner/p1"}`, "subjects"},
	}
	client := h2cClient()
	for _, c := range cases {
		for _, door := range []string{"connect", "connect charset", "connect GET", "grpc+json", "grpc+json charset", "grpc-web+json"} {
			if door == "connect GET" && !strings.HasPrefix(c.path, "/chaperone.v1.DecisionService/") {
				continue // only side-effect-free methods answer GET
			}
			t.Run(c.name+"/"+door, func(t *testing.T) {
				t.Parallel()
				code, msg := callJSON(t, client, base+c.path, door, c.body)
				if c.field == "" {
					if code != "" {
						t.Fatalf("got %s %q, want a decision", code, msg)
					}
					return
				}
				if code != "invalid_argument" || !strings.Contains(msg, `unknown field`) || !strings.Contains(msg, c.field) {
					t.Fatalf("got %q %q, want invalid_argument naming the unknown field %s", code, msg, c.field)
				}
			})
		}
	}
}

// callJSON sends body to url through door and returns the error code
// ("" on success) and message.
func callJSON(t *testing.T, client *http.Client, u, door, body string) (code, msg string) {
	t.Helper()
	var req *http.Request
	var err error
	switch door {
	case "connect", "connect charset":
		req, err = http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", map[string]string{"connect": "application/json", "connect charset": "application/json; charset=utf-8"}[door])
		}
	case "connect GET":
		req, err = http.NewRequest(http.MethodGet, u+"?connect=v1&encoding=json&message="+url.QueryEscape(body), nil)
	case "grpc+json", "grpc+json charset", "grpc-web+json":
		var frame bytes.Buffer
		frame.WriteByte(0)
		binary.Write(&frame, binary.BigEndian, uint32(len(body)))
		frame.WriteString(body)
		req, err = http.NewRequest(http.MethodPost, u, &frame)
		if err == nil {
			req.Header.Set("Content-Type", map[string]string{"grpc+json": "application/grpc+json",
				"grpc+json charset": "application/grpc+json; charset=utf-8", "grpc-web+json": "application/grpc-web+json"}[door])
			req.Header.Set("TE", "trailers")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(door, "grpc") {
		status := resp.Trailer.Get("Grpc-Status")
		if status == "" {
			status = resp.Header.Get("Grpc-Status") // trailers-only response
		}
		m := resp.Trailer.Get("Grpc-Message")
		if m == "" {
			m = resp.Header.Get("Grpc-Message")
		}
		if status == "" && door == "grpc-web+json" {
			// gRPC-Web sends trailers as the last frame of the body.
			if i := bytes.LastIndex(raw, []byte("grpc-status:")); i >= 0 {
				status = strings.TrimSpace(strings.SplitN(string(raw[i+len("grpc-status:"):]), "\n", 2)[0])
			}
		}
		m, _ = url.PathUnescape(m)
		switch status {
		case "0":
			return "", ""
		case "3":
			return "invalid_argument", m
		default:
			return "grpc-status " + status, m
		}
	}
	if resp.StatusCode == http.StatusOK {
		return "", ""
	}
	var out struct{ Code, Message string }
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("status %d, body %q", resp.StatusCode, raw)
	}
	return out.Code, out.Message
}

// decisionOf calls Check and reduces the answer to what permissiveness
// is judged by: the decision and the obligations. err is the call's error.
func decisionOf(ctx context.Context, client chaperonev1connect.DecisionServiceClient, req *chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, error) {
	resp, err := client.Check(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return &chaperonev1.CheckResponse{Decision: resp.Msg.GetDecision(), Obligations: resp.Msg.GetObligations()}, nil
}

func describe(m proto.Message) string {
	b, _ := protojson.Marshal(m)
	return fmt.Sprintf("%s", b)
}
