package e2e_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// TestServeRecordsAdminChanges runs serve with a signed audit log, makes
// every kind of admin change over the API, stops it, and reads the
// administrative history back with `audit changes`: the startup bundle
// activation and each change, attributed to anonymous-loopback (serve's
// default, no caller authentication), and the log verifies.
func TestServeRecordsAdminChanges(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.jsonl")
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "audit", "keygen", "-o", filepath.Join(dir, "ak")).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	cmd, base := startServe(t, "--audit-file", auditFile, "--audit-key", filepath.Join(dir, "ak.pem"))
	hc := httpClient()
	ctx := context.Background()

	consent := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(`{"resourceType":"Consent","id":"e2e-1","status":"active","patient":{"reference":"Patient/52"},
		"provision":{"type":"deny"}}`), consent); err != nil {
		t.Fatal(err)
	}
	consents := chaperonev1connect.NewConsentServiceClient(hc, base)
	if _, err := consents.Put(ctx, connect.NewRequest(&chaperonev1.ConsentServicePutRequest{Consent: consent})); err != nil {
		t.Fatal(err)
	}
	if _, err := consents.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "e2e-1"})); err != nil {
		t.Fatal(err)
	}
	acc := chaperonev1connect.NewAccessServiceClient(hc, base)
	g, err := acc.GrantBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
		Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room", GrantedBy: "Practitioner/other"}))
	if err != nil {
		t.Fatal(err)
	}
	if g.Msg.GetGrant().GetGrantedBy() != "anonymous-loopback" {
		t.Errorf("grantedBy = %q, want the caller serve authenticated (anonymous-loopback)", g.Msg.GetGrant().GetGrantedBy())
	}
	if _, err := acc.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{Id: g.Msg.GetGrant().GetId()})); err != nil {
		t.Fatal(err)
	}
	agr := chaperonev1connect.NewAgreementServiceClient(hc, base)
	if _, err := agr.Put(ctx, connect.NewRequest(&chaperonev1.AgreementServicePutRequest{Agreement: &chaperonev1.Agreement{
		ClientId: "vendor-app", Vendor: "Vendor Inc", BaaSigned: true}})); err != nil {
		t.Fatal(err)
	}
	if _, err := agr.Revoke(ctx, connect.NewRequest(&chaperonev1.AgreementServiceRevokeRequest{ClientId: "vendor-app"})); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("serve exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit within 30s of SIGTERM")
	}

	if out, err := exec.Command(bin, "audit", "verify", auditFile, "--pub", filepath.Join(dir, "ak.pub.pem")).CombinedOutput(); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "audit", "changes", "--file", auditFile, "--format", "json").Output()
	if err != nil {
		t.Fatalf("audit changes: %v", err)
	}
	var changes []struct {
		Caller, Action, Outcome, Patient, Revision string
	}
	if err := json.Unmarshal(out, &changes); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Caller+" "+c.Action+" "+c.Outcome)
	}
	want := []string{
		"bundle-loader bundle.activate applied",
		"anonymous-loopback consent.put applied",
		"anonymous-loopback consent.revoke applied",
		"anonymous-loopback break-glass.grant applied",
		"anonymous-loopback break-glass.revoke applied",
		"anonymous-loopback agreement.put applied",
		"anonymous-loopback agreement.revoke applied",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit changes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if changes[0].Revision == "" {
		t.Errorf("the bundle activation names no revision: %s", out)
	}
}
