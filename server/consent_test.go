package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chaperone-pdp/chaperone/consentstore"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

func consentClient(t *testing.T) (chaperonev1connect.ConsentServiceClient, *consentstore.Memory) {
	t.Helper()
	store := consentstore.NewMemory()
	mux := http.NewServeMux()
	mux.Handle(chaperonev1connect.NewConsentServiceHandler(server.NewConsentService(store)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return chaperonev1connect.NewConsentServiceClient(srv.Client(), srv.URL), store
}

func structOf(t *testing.T, js string) *structpb.Struct {
	t.Helper()
	s := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(js), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func putReq(t *testing.T, js string) *connect.Request[chaperonev1.ConsentServicePutRequest] {
	return connect.NewRequest(&chaperonev1.ConsentServicePutRequest{Consent: structOf(t, js)})
}

func TestConsentServicePut(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile("../fhirconsent/testdata/hl7-r4/Consent-consent-example-notOrg.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		js    string
		code  connect.Code
		msg   string
		id    string
		anyID bool
	}{
		{name: "HL7 example", js: string(example), id: "consent-example-notOrg"},
		{name: "R5 without id", js: `{"resourceType":"Consent","status":"active","subject":{"reference":"Patient/1"},"decision":"deny"}`, anyID: true},
		{name: "bad actor reference", js: `{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/1"},"provision":{"actor":[{"reference":"Practitioner/1"}]}}`,
			code: connect.CodeInvalidArgument, msg: "consent.provision.actor[0].reference: want an object"},
		{name: "not a consent", js: `{"resourceType":"Patient","id":"p"}`, code: connect.CodeInvalidArgument, msg: "consent.resourceType"},
		{name: "no status", js: `{"resourceType":"Consent","patient":{"reference":"Patient/1"}}`, code: connect.CodeInvalidArgument, msg: "consent.status: required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, _ := consentClient(t)
			resp, err := client.Put(context.Background(), putReq(t, tc.js))
			if tc.code != 0 {
				if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want %v %q", err, tc.code, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tc.anyID && resp.Msg.GetId() == "") || (!tc.anyID && resp.Msg.GetId() != tc.id) || resp.Msg.GetVersion() == "" {
				t.Errorf("response %v", resp.Msg)
			}
		})
	}
	t.Run("missing consent", func(t *testing.T) {
		t.Parallel()
		client, _ := consentClient(t)
		_, err := client.Put(context.Background(), connect.NewRequest(&chaperonev1.ConsentServicePutRequest{}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("err = %v", err)
		}
	})
}

func TestConsentServiceLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, store := consentClient(t)
	put, err := client.Put(ctx, putReq(t, `{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/52"},"provision":{"type":"permit"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Put(ctx, putReq(t, `{"resourceType":"Consent","id":"c2","status":"inactive","subject":{"reference":"Patient/52"}}`)); err != nil {
		t.Fatal(err)
	}

	got, err := client.Get(ctx, connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{Id: "c1"}))
	if err != nil {
		t.Fatal(err)
	}
	c := got.Msg.GetConsent()
	if c.GetId() != "c1" || c.GetVersion() != put.Msg.GetVersion() || c.GetPatient() != "Patient/52" || c.GetFhirVersion() != "R4" ||
		c.GetStatus() != "active" || c.GetRevoked() || c.GetConsent().GetFields()["resourceType"].GetStringValue() != "Consent" {
		t.Errorf("get %v", c)
	}

	list, err := client.List(ctx, connect.NewRequest(&chaperonev1.ConsentServiceListRequest{Patient: "Patient/52"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.GetConsents()) != 2 || list.Msg.GetConsents()[1].GetFhirVersion() != "R5" || list.Msg.GetVersion() == "" {
		t.Errorf("list %v", list.Msg)
	}

	rev, err := client.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "c1"}))
	if err != nil {
		t.Fatal(err)
	}
	if rev.Msg.GetId() != "c1" || rev.Msg.GetVersion() == put.Msg.GetVersion() {
		t.Errorf("revoke %v", rev.Msg)
	}
	got, err = client.Get(ctx, connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{Id: "c1"}))
	if err != nil || !got.Msg.GetConsent().GetRevoked() {
		t.Errorf("revoked consent: %v %v", got, err)
	}
	set, _ := store.ForPatient(ctx, "Patient/52")
	if len(set.Consents) != 1 || set.Consents[0].ID != "c2" {
		t.Errorf("store after revoke: %+v", set)
	}
	list2, _ := client.List(ctx, connect.NewRequest(&chaperonev1.ConsentServiceListRequest{Patient: "Patient/52"}))
	if list2.Msg.GetVersion() == list.Msg.GetVersion() {
		t.Error("patient version unchanged by revoke")
	}
}

func TestConsentServiceNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := consentClient(t)
	cases := []struct {
		name string
		call func() error
		code connect.Code
	}{
		{"get", func() error {
			_, err := client.Get(ctx, connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{Id: "nope"}))
			return err
		}, connect.CodeNotFound},
		{"revoke", func() error {
			_, err := client.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "nope"}))
			return err
		}, connect.CodeNotFound},
		{"get without id", func() error {
			_, err := client.Get(ctx, connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{}))
			return err
		}, connect.CodeInvalidArgument},
		{"list without patient", func() error {
			_, err := client.List(ctx, connect.NewRequest(&chaperonev1.ConsentServiceListRequest{}))
			return err
		}, connect.CodeInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call()
			var cerr *connect.Error
			if !errors.As(err, &cerr) || cerr.Code() != tc.code {
				t.Errorf("err = %v, want %v", err, tc.code)
			}
		})
	}
	list, err := client.List(ctx, connect.NewRequest(&chaperonev1.ConsentServiceListRequest{Patient: "Patient/none"}))
	if err != nil || len(list.Msg.GetConsents()) != 0 {
		t.Errorf("empty list: %v %v", list, err)
	}
}
