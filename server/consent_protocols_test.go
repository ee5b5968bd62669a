package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// TestConsentRefusalsOverEveryProtocol: what ConsentService.Put cannot
// undo or afford is refused with the same code over Connect JSON, Connect
// protobuf and gRPC, through the server's validation and read limits, and
// Patient/53's opt-out stays as it was.
func TestConsentRefusalsOverEveryProtocol(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := consentstore.NewMemory()
	if _, err := store.Load(ctx, "../policies/fixtures/consents"); err != nil {
		t.Fatal(err)
	}
	optOut, err := store.Get(ctx, "deny-53")
	if err != nil {
		t.Fatal(err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	base := serveSplit(t, server.New(engine.New(engine.StoreConsents(store)), v,
		server.WithConsentService(server.NewConsentService(store, server.WithConsentMaxBytes(8<<10)))))

	r4 := func(id, patient, date, provision string) string {
		return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active","patient":{"reference":%q},"dateTime":%q,"provision":%s}`, id, patient, date, provision)
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = `{"type":"deny"}`
	}
	huge := `{"type":"permit","purpose":[` + strings.Repeat(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"},`, 2000) + `{"code":"TREAT"}]}`
	cases := []struct {
		name      string
		js        string
		ifVersion string
		code      connect.Code
	}{
		{"an id of 300 characters", r4(strings.Repeat("a", 300), "Patient/53", "2026-01-01", `{"type":"permit"}`), "", connect.CodeInvalidArgument},
		{"deny-53 reused for Patient/999", r4("deny-53", "Patient/999", "2026-01-01", `{"type":"permit"}`), "", connect.CodeFailedPrecondition},
		{"a permit dated 2099", r4("permit-2099", "Patient/53", "2099-01-01", `{"type":"permit"}`), "", connect.CodeInvalidArgument},
		{"a stale ifVersion", r4("deny-53", "Patient/53", "2026-01-01", `{"type":"permit"}`), "12345", connect.CodeAborted},
		{"an ifVersion that is no version", r4("deny-53", "Patient/53", "2026-01-01", `{"type":"permit"}`), "v1", connect.CodeInvalidArgument},
		{"1,001 provisions", r4("many", "Patient/53", "2026-01-01", `{"type":"permit","provision":[`+strings.Join(many, ",")+`]}`), "", connect.CodeResourceExhausted},
		{"a consent far beyond the byte limit", r4("huge", "Patient/53", "2026-01-01", huge), "", connect.CodeResourceExhausted},
	}
	protocols := map[string][]connect.ClientOption{
		"connect-json":  {connect.WithProtoJSON()},
		"connect-proto": nil,
		"grpc":          {connect.WithGRPC()},
	}
	for pname, opts := range protocols {
		client := chaperonev1connect.NewConsentServiceClient(h2cClient(), base, opts...)
		for _, tc := range cases {
			t.Run(pname+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				req := putReq(t, tc.js)
				req.Msg.IfVersion = tc.ifVersion
				_, err := client.Put(ctx, req)
				if connect.CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want %v", err, tc.code)
				}
				got, err := client.Get(ctx, connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{Id: "deny-53"}))
				if err != nil {
					t.Fatal(err)
				}
				if c := got.Msg.GetConsent(); c.GetPatient() != "Patient/53" || c.GetVersion() != optOut.Version || c.GetRevoked() {
					t.Errorf("Patient/53's opt-out after the refused put: %v", c)
				}
			})
		}
	}
}
