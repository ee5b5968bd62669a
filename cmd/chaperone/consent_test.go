package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// runConsent runs "chaperone consent ARGS" and returns the exit code the
// way main maps errors.
func runConsent(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	cmd := newConsentCmd(e)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	if err == nil {
		return exitOK, out.String(), errb.String()
	}
	errb.WriteString(err.Error())
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, out.String(), errb.String()
	}
	return exitUsage, out.String(), errb.String()
}

const hl7 = "../../fhirconsent/testdata/hl7-r4/"

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConsentEval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	read := writeFile(t, dir, "read.json", `{"subject":{"id":"Practitioner/f204"},"action":"read","resource":{"type":"Observation","id":"o1","patient":"Patient/f001"},"purposeOfUse":"TREAT","context":{"time":"2016-01-01T00:00:00Z"}}`)
	search := writeFile(t, dir, "search.json", `{"subject":{"id":"Practitioner/p9","organization":"Organization/54"},"action":"search","resource":{"patient":"Patient/52"},"purposeOfUse":"TREAT","context":{"time":"2024-01-01T00:00:00Z"}}`)
	noResource := writeFile(t, dir, "nores.json", `{"subject":{"id":"Practitioner/p9"},"action":"search","purposeOfUse":"TREAT"}`)
	badReq := writeFile(t, dir, "bad.json", `{"subject":{"id":""},"action":"read","resource":{"type":"Observation"},"purposeOfUse":"TREAT"}`)
	unknownField := writeFile(t, dir, "unknown.json", `{"subject":{"id":"x"},"action":"read","resource":{"type":"Observation"},"purposeOfUse":"TREAT","extra":1}`)
	labelDeny := writeFile(t, dir, "labels.json", `{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/52"},"dateTime":"2023-04-28","provision":{"type":"permit","provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}]}}`)
	bundle := writeFile(t, dir, "bundle.json", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/52"},"dateTime":"2020-01-01","provision":{"type":"permit"}}},{"resource":{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/52"},"dateTime":"2019-01-01","provision":{"type":"deny"}}}]}`)
	badConsent := writeFile(t, dir, "badconsent.json", `{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/52"},"provision":{"actor":[{"reference":"Practitioner/1"}]}}`)

	cases := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		decision string
		redact   string
		consents string
		provs    string
		errText  string
	}{
		{name: "deny", args: []string{"eval", "--request", read, hl7 + "Consent-consent-example-notThem--nested-deny.json"}, decision: "DENY",
			consents: "consent-example-notThem--nested-deny", provs: "Consent/consent-example-notThem--nested-deny#provision.provision[0]"},
		{name: "no consent", args: []string{"eval", "--request", read, hl7 + "Consent-consent-example-notOrg.json"}, decision: "NO_CONSENT"},
		{name: "request from stdin", stdin: "{\"subject\":{\"id\":\"Practitioner/x\"},\"action\":\"read\",\"resource\":{\"type\":\"Observation\",\"patient\":\"Patient/f001\"},\"purposeOfUse\":\"TREAT\",\"context\":{\"time\":\"2015-06-01T00:00:00Z\"}}",
			args: []string{"eval", "--request", "-", hl7 + "Consent-consent-example-basic.json"}, decision: "PERMIT"},
		{name: "search with redaction", args: []string{"eval", "--request", search, labelDeny}, decision: "PERMIT", redact: "R,V", consents: "labels"},
		{name: "missing resource", args: []string{"eval", "--request", noResource, labelDeny}, decision: "NO_CONSENT"},
		{name: "bundle most recent", args: []string{"eval", "--request", search, bundle}, decision: "PERMIT", consents: "bundle-1"},
		{name: "bundle deny overrides", args: []string{"eval", "--rule", "deny-overrides", "--request", search, bundle}, decision: "DENY", consents: "bundle-2"},
		{name: "bad rule", args: []string{"eval", "--rule", "first", "--request", search, bundle}, code: exitUsage, errText: "--rule"},
		{name: "invalid request", args: []string{"eval", "--request", badReq, bundle}, code: exitUsage, errText: "bad.json: invalid request: subject.id"},
		{name: "unknown request field", args: []string{"eval", "--request", unknownField, bundle}, code: exitUsage, errText: "unknown.json"},
		{name: "missing request file", args: []string{"eval", "--request", filepath.Join(dir, "none.json"), bundle}, code: exitUsage, errText: "read request"},
		{name: "no --request", args: []string{"eval", bundle}, code: exitUsage, errText: "--request"},
		{name: "no consent files", args: []string{"eval", "--request", search}, code: exitUsage},
		{name: "bad consent", args: []string{"eval", "--request", search, badConsent}, code: exitUsage, errText: "badconsent.json: provision.actor[0].reference: want an object"},
		{name: "consent is not JSON", args: []string{"eval", "--request", search, read + "x"}, code: exitUsage, errText: "read consent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runConsent(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, stderr)
			}
			if tc.code != 0 {
				if !strings.Contains(stderr, tc.errText) {
					t.Errorf("stderr %q, want %q", stderr, tc.errText)
				}
				return
			}
			var out struct {
				Decision    string `json:"decision"`
				Obligations struct {
					RedactLabels []fhirconsent.Coding `json:"redactLabels"`
				} `json:"obligations"`
				Consents   []fhirconsent.ConsentRef `json:"consents"`
				Provisions []string                 `json:"provisions"`
			}
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if !strings.Contains(stdout, `"redactLabels": [`) || out.Consents == nil || out.Provisions == nil {
				t.Errorf("lists must be present: %s", stdout)
			}
			if out.Decision != tc.decision {
				t.Errorf("decision %s, want %s", out.Decision, tc.decision)
			}
			var codes, ids []string
			for _, l := range out.Obligations.RedactLabels {
				codes = append(codes, l.Code)
			}
			for _, c := range out.Consents {
				ids = append(ids, c.ID)
			}
			if got := strings.Join(codes, ","); got != tc.redact {
				t.Errorf("redact %q, want %q", got, tc.redact)
			}
			if got := strings.Join(ids, ","); tc.consents != "" && got != tc.consents {
				t.Errorf("consents %q, want %q", got, tc.consents)
			}
			if got := strings.Join(out.Provisions, ","); tc.provs != "" && got != tc.provs {
				t.Errorf("provisions %q, want %q", got, tc.provs)
			}
		})
	}
}

func TestConsentImport(t *testing.T) {
	t.Parallel()
	store := consentstore.NewMemory()
	mux := http.NewServeMux()
	mux.Handle(chaperonev1connect.NewConsentServiceHandler(server.NewConsentService(store)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	code, stdout, stderr := runConsent(t, "", "import", hl7, "--to", srv.URL, "--progress", "5", "--batch", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "imported 15 consents from 15 files") {
		t.Errorf("summary %q", stdout)
	}
	if strings.Count(stderr, "imported ") != 3 {
		t.Errorf("progress %q", stderr)
	}
	rec, err := store.Get(context.Background(), "consent-example-pkb")
	if err != nil || rec.Consent.Patient != "Patient/example" {
		t.Errorf("stored pkb: %+v %v", rec, err)
	}

	dir := t.TempDir()
	nd := writeFile(t, dir, "c.ndjson", `{"resourceType":"Consent","status":"active","subject":{"reference":"Patient/9"}}`+"\n"+`{"resourceType":"Consent","status":"active","subject":{"reference":"Patient/9"}}`+"\n")
	if code, _, stderr := runConsent(t, "", "import", nd, "--to", strings.TrimPrefix(srv.URL, "http://")); code != 0 {
		t.Fatalf("ndjson import exit %d: %s", code, stderr)
	}
	if recs, _, _ := store.List(context.Background(), "Patient/9"); len(recs) != 2 {
		t.Errorf("ndjson: %d stored", len(recs))
	}

	// A consent the server refuses fails the import (exit 1), naming it.
	other := writeFile(t, dir, "other.ndjson", `{"resourceType":"Consent","id":"consent-example-pkb","status":"active","subject":{"reference":"Patient/8"}}`+"\n")
	if code, _, stderr := runConsent(t, "", "import", other, "--to", srv.URL); code != exitFailed || !strings.Contains(stderr, "other.ndjson: failed_precondition") {
		t.Errorf("refused consent: exit %d %q", code, stderr)
	}

	bad := writeFile(t, t.TempDir(), "bad.json", `{"resourceType":"Consent","status":"active"}`)
	if code, _, stderr := runConsent(t, "", "import", bad, "--to", srv.URL); code != exitUsage || !strings.Contains(stderr, "bad.json: patient: required") {
		t.Errorf("bad file: exit %d %q", code, stderr)
	}
	if code, _, _ := runConsent(t, "", "import", hl7); code != exitUsage {
		t.Errorf("no --to: exit %d", code)
	}
	closed := httptest.NewServer(mux)
	closed.Close()
	if code, _, stderr := runConsent(t, "", "import", nd, "--to", closed.URL); code != exitFailed {
		t.Errorf("server down: exit %d %q", code, stderr)
	}
}
