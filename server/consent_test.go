package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

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

// TestConsentServiceRefusals: what Put cannot undo or cannot afford is
// refused, and nothing is stored.
func TestConsentServiceRefusals(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	newClient := func(t *testing.T) chaperonev1connect.ConsentServiceClient {
		store := consentstore.NewMemory(consentstore.WithMemoryClock(func() time.Time { return now }),
			consentstore.WithMemoryLimits(consentstore.Limits{MaxProvisions: 5, MaxPerPatient: 3}))
		mux := http.NewServeMux()
		mux.Handle(chaperonev1connect.NewConsentServiceHandler(server.NewConsentService(store, server.WithConsentMaxBytes(4096))))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return chaperonev1connect.NewConsentServiceClient(srv.Client(), srv.URL)
	}
	r4 := func(id, patient, date, provision string) string {
		return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active","patient":{"reference":%q},"dateTime":%q,"provision":%s}`, id, patient, date, provision)
	}
	optOut := r4("deny-53", "Patient/53", "2026-02-01", `{"type":"deny"}`)
	deny := make([]string, 6)
	for i := range deny {
		deny[i] = `{"type":"deny"}`
	}
	cases := []struct {
		name      string
		js        string
		ifVersion string
		code      connect.Code
		msg       string
	}{
		{name: "id of 300 characters", js: r4(strings.Repeat("a", 300), "Patient/53", "2026-02-01", `{"type":"permit"}`), code: connect.CodeInvalidArgument, msg: "consent.id"},
		{name: "id with a slash", js: r4("a/b", "Patient/53", "2026-02-01", `{"type":"permit"}`), code: connect.CodeInvalidArgument, msg: "consent.id"},
		{name: "id of another patient", js: r4("deny-53", "Patient/999", "2026-02-01", `{"type":"permit"}`), code: connect.CodeFailedPrecondition, msg: "another patient"},
		{name: "dated 2099", js: r4("permit-2099", "Patient/53", "2099-01-01", `{"type":"permit"}`), code: connect.CodeInvalidArgument, msg: "consent.dateTime"},
		{name: "R5 dated 2099", js: `{"resourceType":"Consent","id":"r5","status":"active","subject":{"reference":"Patient/53"},"date":"2099-01-01","decision":"permit"}`, code: connect.CodeInvalidArgument, msg: "consent.date"},
		{name: "too large", js: r4("big", "Patient/53", "2026-02-01", `{"type":"permit","purpose":[`+strings.Repeat(`{"code":"TREAT"},`, 300)+`{"code":"TREAT"}]}`), code: connect.CodeResourceExhausted, msg: "bytes"},
		{name: "too many provisions", js: r4("many", "Patient/53", "2026-02-01", `{"type":"permit","provision":[`+strings.Join(deny, ",")+`]}`), code: connect.CodeResourceExhausted, msg: "provisions"},
		{name: "stale ifVersion", js: optOut, ifVersion: "999", code: connect.CodeAborted, msg: "ifVersion"},
		{name: "ifVersion of no record", js: r4("new", "Patient/53", "2026-02-01", `{"type":"permit"}`), ifVersion: "1", code: connect.CodeAborted, msg: "ifVersion"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			client := newClient(t)
			first, err := client.Put(ctx, putReq(t, optOut))
			if err != nil {
				t.Fatal(err)
			}
			req := putReq(t, tc.js)
			req.Msg.IfVersion = tc.ifVersion
			_, err = client.Put(ctx, req)
			if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v %q", err, tc.code, tc.msg)
			}
			list, err := client.List(ctx, connect.NewRequest(&chaperonev1.ConsentServiceListRequest{Patient: "Patient/53"}))
			if err != nil {
				t.Fatal(err)
			}
			if cs := list.Msg.GetConsents(); len(cs) != 1 || cs[0].GetId() != "deny-53" || cs[0].GetVersion() != first.Msg.GetVersion() {
				t.Errorf("Patient/53's consents after the refused put: %v", cs)
			}
		})
	}
	t.Run("consents per patient", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		client := newClient(t)
		for i := range 3 {
			if _, err := client.Put(ctx, putReq(t, r4(fmt.Sprint("c", i), "Patient/53", "2026-02-01", `{"type":"permit"}`))); err != nil {
				t.Fatal(err)
			}
		}
		_, err := client.Put(ctx, putReq(t, r4("c3", "Patient/53", "2026-02-01", `{"type":"permit"}`)))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("fourth consent: %v, want resource_exhausted", err)
		}
	})
	t.Run("ifVersion replaces", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		client := newClient(t)
		first, err := client.Put(ctx, putReq(t, optOut))
		if err != nil {
			t.Fatal(err)
		}
		req := putReq(t, optOut)
		req.Msg.IfVersion = first.Msg.GetVersion()
		second, err := client.Put(ctx, req)
		if err != nil || second.Msg.GetVersion() == first.Msg.GetVersion() {
			t.Fatalf("put with the current version: %v %v", second, err)
		}
		if _, err := client.Put(ctx, req); connect.CodeOf(err) != connect.CodeAborted {
			t.Errorf("second put with the same version: %v, want aborted", err)
		}
	})
}
