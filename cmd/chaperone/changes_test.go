package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/engine"
)

// writeChangeLog writes a signed log holding a bundle activation (through
// serve's recorder), consent and grant changes with their outcomes, a
// change whose outcome was never recorded, a decision and its review (by
// the review command), and returns the log and key prefix.
func writeChangeLog(t *testing.T) (path, key string) {
	t.Helper()
	path, key = writeAuditLog(t, sampleDecisions()[:3]) // d-2 is a break-glass access of Patient/52
	signer, err := audit.LoadSigner(key + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	at := func(d time.Duration) { clock.Store(day.Add(d).UnixNano()) }
	l := audit.New(sink, audit.WithSigner(signer), audit.WithCheckpoints(4, time.Hour), audit.WithSyncDelay(0),
		audit.WithClock(func() time.Time { return time.Unix(0, clock.Load()) }))
	ctx := context.Background()
	at(time.Hour)
	activated, err := recordActivation(l)(ctx, bundles.Status{Revision: "2026.12.01-1", Name: "ref", Digest: "sha256:abc",
		Signers: []string{"k1", "k2"}, Source: "bundle.tar.gz"}, bundles.Status{Revision: "2026.11.25-2"})
	if err != nil {
		t.Fatal(err)
	}
	activated()
	expires := day.Add(6 * time.Hour)
	for _, c := range []struct {
		at      time.Duration
		caller  string
		change  audit.Change
		outcome *audit.Change
	}{
		{2 * time.Hour, "svc-consent", audit.Change{ID: "c1", Action: audit.ChangeConsentPut, ConsentID: "cons-1", Patient: "Patient/52", Status: "active", FHIRVersion: "R4"},
			&audit.Change{ID: "c1", Action: audit.ChangeConsentPut, Outcome: audit.OutcomeApplied, ConsentID: "cons-1", Version: "7"}},
		{3 * time.Hour, "dr-admin", audit.Change{ID: "c2", Action: audit.ChangeGrant, GrantID: "g-1", Subject: "Practitioner/7", Patient: "Patient/52",
			Reason: "unconscious patient in the emergency room", Expires: &expires},
			&audit.Change{ID: "c2", Action: audit.ChangeGrant, Outcome: audit.OutcomeApplied, GrantID: "g-1"}},
		{4 * time.Hour, "spiffe://rt/ops", audit.Change{ID: "c3", Action: audit.ChangeGrantRevoke, GrantID: "g-9"},
			&audit.Change{ID: "c3", Action: audit.ChangeGrantRevoke, Outcome: audit.OutcomeFailed, Error: "not_found"}},
		{5 * time.Hour, "svc-consent\nforged\trow", audit.Change{ID: "c4", Action: audit.ChangeConsentRevoke, ConsentID: "cons-2"}, nil},
		{6 * time.Hour, "dr-admin", audit.Change{ID: "c5", Action: audit.ChangeAgreementPut, ClientID: "vendor-app", Vendor: "Vendor Inc", BAASigned: true},
			&audit.Change{ID: "c5", Action: audit.ChangeAgreementPut, Outcome: audit.OutcomeApplied}},
	} {
		at(c.at)
		if err := l.Change(ctx, c.caller, c.change); err != nil {
			t.Fatal(err)
		}
		if c.outcome != nil {
			if err := l.ChangeOutcome(ctx, c.caller, *c.outcome); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runAudit(t, "audit", "review", "d-2", "--by", "privacy officer", "--note", "justified", "--key", key+".pem", "--file", path); code != 0 {
		t.Fatalf("review: exit %d: %s", code, stderr)
	}
	return path, key
}

func TestAuditChangesCommand(t *testing.T) {
	t.Parallel()
	path, key := writeChangeLog(t)
	if code, stdout, stderr := runAudit(t, "audit", "verify", path, "--pub", key+".pub.pem"); code != 0 {
		t.Fatalf("verify of a log with change records: exit %d\n%s%s", code, stdout, stderr)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // substrings of stdout
		not      []string
	}{
		{name: "table", args: []string{"audit", "changes"}, want: []string{
			"CALLER", "bundle-loader", "bundle.activate", "bundle 2026.12.01-1", "digest=sha256:abc", "signers=k1,k2", "previous=2026.11.25-2",
			"svc-consent", "consent.put", "consent cons-1", "version=7", "status=active",
			"dr-admin", "break-glass.grant", "grant g-1", "Practitioner/7", `reason="unconscious patient in the emergency room"`, "expires=2026-11-02T16:00:00Z",
			"spiffe://rt/ops", "failed (not_found)", "consent.revoke", "unknown", `"svc-consent\nforged\trow"`,
			"agreement.put", "agreement vendor-app", "vendor=Vendor Inc",
			"break-glass.review", "decision d-2", `by=privacy officer`, "Practitioner/p3",
		}},
		{name: "json", args: []string{"audit", "changes", "--format", "json"}, want: []string{
			`"action": "break-glass.grant"`, `"caller": "dr-admin"`, `"grantId": "g-1"`, `"expires": "2026-11-02T16:00:00Z"`, `"outcome": "applied"`,
			`"signers": [`, `"previousRevision": "2026.11.25-2"`,
		}},
		{name: "patient", args: []string{"audit", "changes", "--patient", "Patient/52"}, want: []string{"consent.put", "break-glass.grant", "break-glass.review"},
			not: []string{"bundle.activate", "agreement.put", "g-9"}},
		{name: "no forged row", args: []string{"audit", "changes"}, not: []string{"\nforged"}},
		{name: "window", args: []string{"audit", "changes", "--since", "2026-11-02T12:30:00Z", "--until", "2026-11-02T14:30:00Z"}, want: []string{"break-glass.grant", "g-9"},
			not: []string{"consent.put", "consent.revoke", "bundle.activate"}},
		{name: "nothing", args: []string{"audit", "changes", "--patient", "Patient/404", "--format", "json"}, want: []string{"[]"}},
		{name: "bad format", args: []string{"audit", "changes", "--format", "xml"}, wantCode: exitUsage},
		{name: "bad time", args: []string{"audit", "changes", "--since", "yesterday"}, wantCode: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runAudit(t, append(tt.args, "--file", path)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tt.wantCode, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(stdout, w) {
					t.Errorf("output has %q:\n%s", w, stdout)
				}
			}
		})
	}
	// The JSON is the history, one entry per change, oldest first.
	_, stdout, _ := runAudit(t, "audit", "changes", "--format", "json", "--file", path)
	var cs []audit.ChangeEntry
	if err := json.Unmarshal([]byte(stdout), &cs); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, c := range cs {
		actions = append(actions, string(c.Action)+"/"+c.Outcome)
	}
	want := "bundle.activate/applied consent.put/applied break-glass.grant/applied break-glass.revoke/failed consent.revoke/unknown agreement.put/applied break-glass.review/recorded"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("history:\n got %s\nwant %s", got, want)
	}
	if r := cs[len(cs)-1]; !strings.HasPrefix(r.Caller, "local:") || r.ReviewedBy != "privacy officer" || r.Patient != "Patient/52" {
		t.Errorf("review entry = %+v, want the OS user as caller, the reviewer and the decision's patient", r)
	}
}

// serve records each bundle activation before the bundle decides; when
// the record cannot be stored the bundle is refused.
func TestBundleActivationRecorded(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := bundles.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(tmp, "key.pub.pem")
	if err := os.WriteFile(keyFile, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(tmp, "signed.tar.gz")
	writeBundle(t, "../../bundles/testdata/v1", signed, priv)
	start := func(l *audit.Log) (*engine.Engine, *bundleFlags, error) {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		bf := addBundleFlags(fs)
		if err := fs.Parse([]string{"--bundle", signed, "--verify-key", keyFile}); err != nil {
			t.Fatal(err)
		}
		bf.record = recordActivation(l)
		eng := engine.New(nil)
		_, stop, err := bf.start(context.Background(), eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			stop()
		}
		return eng, bf, err
	}

	logPath := filepath.Join(tmp, "audit.jsonl")
	sink, err := audit.OpenFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	eng, bf, err := start(l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, err := audit.Records(audit.ReadFiles(logPath))
	if err != nil {
		t.Fatal(err)
	}
	st := bf.loader.Status()
	cs := audit.Changes(recs, "", audit.Window{})
	if len(cs) != 1 || cs[0].Action != audit.ChangeBundleActivate || cs[0].Caller != audit.CallerBundleLoader || cs[0].Outcome != audit.OutcomeApplied ||
		cs[0].Revision != eng.Bundle().Revision() || cs[0].Digest != st.Digest || len(cs[0].Signers) != 1 || cs[0].Signers[0] != st.Signers[0] {
		t.Fatalf("changes = %+v, want the activation of %+v", cs, st)
	}

	// A closed log cannot record: the bundle is refused and none decides.
	eng, _, err = start(l)
	var ee *exitError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "record the activation") || eng.Bundle() != nil {
		t.Fatalf("start with a closed audit log = %v, active %v; want the bundle refused", err, eng.Bundle())
	}
}

// A bundle older than the active one is refused; with --allow-downgrade it
// activates and the chain records it as a downgrade.
func TestBundleDowngradeRecorded(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprint("allow-downgrade=", allow), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			bundle := filepath.Join(tmp, "b.tar.gz")
			writeBundle(t, "../../bundles/testdata/v2", bundle, nil)
			logPath := filepath.Join(tmp, "audit.jsonl")
			sink, err := audit.OpenFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			l := audit.New(sink, audit.WithSyncDelay(0))
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			bf := addBundleFlags(fs)
			if err := fs.Parse([]string{"--bundle", bundle, "--bundle-poll-interval", "1h", fmt.Sprint("--allow-downgrade=", allow)}); err != nil {
				t.Fatal(err)
			}
			bf.record = recordActivation(l)
			eng := engine.New(nil)
			_, stop, err := bf.start(context.Background(), eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			stop()
			writeBundle(t, "../../bundles/testdata/v1", bundle, nil)
			err = bf.loader.Load(context.Background())
			if allow != (err == nil) || !allow && !errors.Is(err, bundles.ErrDowngrade) {
				t.Fatalf("load of the older bundle = %v", err)
			}
			want := map[bool]string{false: "2026.01-2", true: "2026.01-1"}[allow]
			if eng.Bundle().Revision() != want {
				t.Fatalf("active revision %s, want %s", eng.Bundle().Revision(), want)
			}
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runAudit(t, "audit", "changes", "--file", logPath)
			if code != 0 || strings.Count(stdout, "bundle.activate") != map[bool]int{false: 1, true: 2}[allow] ||
				strings.Contains(stdout, "downgrade=true") != allow {
				t.Fatalf("audit changes: %d %s\n%s", code, stderr, stdout)
			}
		})
	}
}
