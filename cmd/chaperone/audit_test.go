package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// runAudit runs the chaperone command and returns its exit code and output.
func runAudit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

type auditDecision struct {
	subject, org, role, patient, resType, resID, purpose, breakGlass string
	allow                                                            bool
	at                                                               time.Time
}

func (d auditDecision) messages(i int) (*chaperonev1.CheckRequest, *chaperonev1.CheckResponse) {
	req := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: d.subject, Roles: []string{d.role}, Organization: d.org, ClientId: "portal"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: d.resType, Id: d.resID, Patient: d.patient},
		PurposeOfUse: d.purpose,
		Context:      &chaperonev1.Context{Time: timestamppb.New(d.at), BreakGlassReason: d.breakGlass},
	}
	resp := &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_DENY, DecisionId: fmt.Sprintf("d-%d", i)}
	if d.allow {
		resp.Decision = chaperonev1.Decision_DECISION_ALLOW
	}
	return req, resp
}

// writeAuditLog records the decisions with the log's clock set to each
// one's time, signed by a fresh key, and returns the log path and key prefix.
func writeAuditLog(t *testing.T, ds []auditDecision, opts ...audit.Option) (path, key string) {
	t.Helper()
	dir := t.TempDir()
	key = filepath.Join(dir, "audit")
	if code, _, stderr := runAudit(t, "audit", "keygen", "-o", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	path = filepath.Join(dir, "audit.jsonl")
	signer, err := audit.LoadSigner(key + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	l := audit.New(sink, append([]audit.Option{audit.WithSigner(signer), audit.WithCheckpoints(3, time.Hour), audit.WithAnchor(audit.NewFileAnchor(path + ".anchor")),
		audit.WithClock(func() time.Time { return time.Unix(0, clock.Load()) })}, opts...)...)
	for i, d := range ds {
		clock.Store(d.at.UnixNano())
		req, resp := d.messages(i)
		if err := l.Record(context.Background(), "", req, resp); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path, key
}

var day = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

func sampleDecisions() []auditDecision {
	ds := []auditDecision{
		{"Practitioner/p1", "Organization/o1", "clinician", "Patient/52", "Observation", "o1", "TREAT", "", true, day},
		{"Practitioner/p2", "Organization/o1", "researcher", "Patient/52", "Observation", "o2", "HRESCH", "", true, day.Add(time.Minute)},
		{"Practitioner/p3", "Organization/o1", "clinician", "Patient/52", "Condition", "c1", "ETREAT", "unconscious patient", true, day.Add(2 * time.Minute)},
		{"Practitioner/p2", "Organization/o1", "researcher", "Patient/53", "Observation", "o3", "HRESCH", "", false, day.Add(3 * time.Minute)},
	}
	// p9 walks patients 100..111 one after the other, after hours.
	for i := range 12 {
		ds = append(ds, auditDecision{"Practitioner/p9", "Organization/o2", "clerk", fmt.Sprintf("Patient/%d", 100+i), "Patient", fmt.Sprint(100 + i), "HOPERAT", "", true, day.Add(12*time.Hour + time.Duration(i)*time.Minute)})
	}
	return ds
}

func TestAuditVerifyCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tamper   func(t *testing.T, path string)
		pub      string // "right", "other" or ""
		extra    []string
		wantCode int
		wantOut  string
	}{
		{name: "intact with key", pub: "right", wantCode: 0, wantOut: "signatures verified; 0 records after the last signed checkpoint\n  closed cleanly"},
		{name: "intact without key", wantCode: 0, wantOut: "signatures NOT verified"},
		{name: "wrong key", pub: "other", wantCode: 1, wantOut: "audit.jsonl:1 (seq 1): signed by a key not given (not the log the key signed)"},
		{name: "edited", pub: "right", wantCode: 1, wantOut: "decision d-1): contents do not match", tamper: func(t *testing.T, path string) {
			editLines(t, path, func(ls []string) []string {
				for i := range ls {
					if strings.Contains(ls[i], `"decisionId":"d-1"`) {
						ls[i] = strings.Replace(ls[i], "HRESCH", "TREAT", 1)
					}
				}
				return ls
			})
		}},
		{name: "deleted", pub: "right", wantCode: 1, wantOut: "audit.jsonl:3 (seq 4", tamper: func(t *testing.T, path string) {
			editLines(t, path, func(ls []string) []string { return append(ls[:2], ls[3:]...) })
		}},
		{name: "reordered", pub: "right", wantCode: 1, wantOut: "audit.jsonl:2 (seq 3", tamper: func(t *testing.T, path string) {
			editLines(t, path, func(ls []string) []string { ls[1], ls[2] = ls[2], ls[1]; return ls })
		}},
		{name: "inserted", pub: "right", wantCode: 1, wantOut: "audit.jsonl:4 (seq 3", tamper: func(t *testing.T, path string) {
			editLines(t, path, func(ls []string) []string { return append(ls[:3], append([]string{ls[2]}, ls[3:]...)...) })
		}},
		{name: "last 10 lines dropped", pub: "right", wantCode: 1, wantOut: "NOT CLOSED CLEANLY", tamper: func(t *testing.T, path string) {
			editLines(t, path, func(ls []string) []string { return ls[:len(ls)-10] })
		}},
		{name: "last 10 lines dropped, open tail allowed", pub: "right", extra: []string{"--allow-open-tail"}, wantCode: 0,
			wantOut: "OPEN: not closed cleanly", tamper: func(t *testing.T, path string) {
				editLines(t, path, func(ls []string) []string { return ls[:len(ls)-10] })
			}},
		{name: "last 10 lines dropped, anchored", pub: "right", extra: []string{"--allow-open-tail", "--anchor", "ANCHOR"}, wantCode: 1,
			wantOut: "the log ends at seq 14, before the anchored head at seq 24", tamper: func(t *testing.T, path string) {
				editLines(t, path, func(ls []string) []string { return ls[:len(ls)-10] })
			}},
		{name: "anchored", pub: "right", extra: []string{"--anchor", "ANCHOR"}, wantCode: 0, wantOut: "reaches the anchored head seq 24"},
		{name: "unsigned log with key", pub: "right", wantCode: 1, wantOut: "audit.jsonl:1 (seq 1, decision d-0): the log does not begin with a signed genesis", tamper: func(t *testing.T, path string) {
			os.Remove(path)
			l := audit.New(mustOpen(t, path))
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			l = audit.New(mustOpen(t, path))
			req, resp := sampleDecisions()[0].messages(0)
			_ = l.Record(context.Background(), "test", req, resp)
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "missing file", wantCode: 2, wantOut: "no such file", tamper: func(t *testing.T, path string) { os.Remove(path) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path, key := writeAuditLog(t, sampleDecisions())
			if tt.tamper != nil {
				tt.tamper(t, path)
			}
			args := []string{"audit", "verify", path}
			switch tt.pub {
			case "right":
				args = append(args, "--pub", key+".pub.pem")
			case "other":
				other := filepath.Join(t.TempDir(), "other")
				runAudit(t, "audit", "keygen", "-o", other)
				args = append(args, "--pub", other+".pub.pem")
			}
			for _, a := range tt.extra {
				args = append(args, strings.ReplaceAll(a, "ANCHOR", path+".anchor"))
			}
			code, stdout, stderr := runAudit(t, args...)
			if code != tt.wantCode || !strings.Contains(stdout+stderr, tt.wantOut) {
				t.Fatalf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tt.wantCode, tt.wantOut, stdout, stderr)
			}
		})
	}
}

func editLines(t *testing.T, path string, edit func([]string) []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := edit(strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"))
	if err := os.WriteFile(path, []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuditReportCommands(t *testing.T) {
	t.Parallel()
	path, key := writeAuditLog(t, sampleDecisions())
	tests := []struct {
		name string
		args []string
		want []string // substrings of stdout, in any order
		not  []string
	}{
		{name: "disclosures leave out TPO", args: []string{"audit", "disclosures", "--patient", "Patient/52", "--format", "json"},
			want: []string{`"recipient": "Practitioner/p2"`, `"purposeOfUse": "HRESCH"`, `"purposeOfUse": "ETREAT"`}, not: []string{"Practitioner/p1"}},
		{name: "disclosures with TPO", args: []string{"audit", "disclosures", "--patient", "Patient/52", "--include-tpo"},
			want: []string{"Practitioner/p1", "Practitioner/p2", "RECIPIENT"}},
		{name: "disclosures in a window", args: []string{"audit", "disclosures", "--patient", "Patient/52", "--since", "2026-11-02T10:00:30Z", "--until", "2026-11-02T10:01:30Z", "--format", "json"},
			want: []string{"Practitioner/p2"}, not: []string{"Practitioner/p3"}},
		{name: "denied access is no disclosure", args: []string{"audit", "disclosures", "--patient", "Patient/53", "--format", "json"},
			want: []string{"[]"}},
		{name: "break-glass", args: []string{"audit", "break-glass", "--since", "2026-11-01"},
			want: []string{"d-2", "unconscious patient", "Practitioner/p3"}, not: []string{"d-1 "}},
		{name: "anomalies", args: []string{"audit", "anomalies", "--sequential-ids", "10", "--distinct-patients", "10", "--after-hours-burst", "12", "--format", "json"},
			want: []string{`"signal": "sequential-ids"`, `"signal": "distinct-patients"`, `"signal": "after-hours"`, `"count": 12`}, not: []string{"Practitioner/p1"}},
		{name: "anomalies off", args: []string{"audit", "anomalies", "--sequential-ids", "0", "--distinct-patients", "0", "--after-hours-burst", "0", "--denials", "0", "--format", "json"},
			want: []string{"[]"}},
		{name: "recertify", args: []string{"audit", "recertify", "--organization", "Organization/o1"},
			want: []string{"clinician", "researcher", "Practitioner/p2", "Observation:2"}, not: []string{"Practitioner/p9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runAudit(t, append(tt.args, "--file", path)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
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
	_ = key
}

func TestAuditReviewCommand(t *testing.T) {
	t.Parallel()
	path, key := writeAuditLog(t, sampleDecisions())
	code, _, stderr := runAudit(t, "audit", "review", "d-2", "--by", "privacy officer", "--note", "justified", "--key", key+".pem", "--file", path)
	if code != 0 {
		t.Fatalf("review: exit %d: %s", code, stderr)
	}
	code, stdout, _ := runAudit(t, "audit", "break-glass", "--unreviewed", "--format", "json", "--file", path)
	if code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("break-glass --unreviewed after review: %d %s", code, stdout)
	}
	_, stdout, _ = runAudit(t, "audit", "break-glass", "--format", "json", "--file", path)
	var as []audit.BreakGlassAccess
	if err := json.Unmarshal([]byte(stdout), &as); err != nil || len(as) != 1 || len(as[0].Reviews) != 1 || as[0].Reviews[0].By != "privacy officer" {
		t.Fatalf("break-glass: %v %s", err, stdout)
	}
	code, stdout, stderr = runAudit(t, "audit", "verify", path, "--pub", key+".pub.pem")
	if code != 0 || !strings.Contains(stdout, "1 reviews") {
		t.Fatalf("verify after review: %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runAudit(t, "audit", "review", "d-404", "--by", "x", "--note", "y", "--file", path); code != 2 || !strings.Contains(stderr, "no decision") {
		t.Fatalf("review of an unknown decision: %d %s", code, stderr)
	}
}

func TestAuditFlagsOpenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "audit")
	runAudit(t, "audit", "keygen", "-o", key)
	path := filepath.Join(dir, "logs", "audit.jsonl")
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	af := addAuditFlags(fs)
	if err := fs.Parse([]string{"--audit-file", path, "--audit-key", key + ".pem", "--audit-max-file-size", "2000"}); err != nil {
		t.Fatal(err)
	}
	l, err := af.open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range sampleDecisions() {
		req, resp := d.messages(i)
		if err := l.Record(context.Background(), "", req, resp); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runAudit(t, "audit", "verify", path, "--pub", key+".pub.pem")
	if code != 0 || !strings.Contains(stdout, "16 decisions") {
		t.Fatalf("verify: %d %s %s", code, stdout, stderr)
	}
	if segs, _ := filepath.Glob(path + ".0*"); len(segs) == 0 {
		t.Error("no rotated file at --audit-max-file-size 2000")
	}
	for _, bad := range [][]string{{"--audit-key", path}, {"--audit-redis", "http://x"}} {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		af := addAuditFlags(fs)
		if err := fs.Parse(append([]string{"--audit-file", path}, bad...)); err != nil {
			t.Fatal(err)
		}
		if _, err := af.open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			t.Errorf("open with %v succeeded", bad)
		}
	}
}

func TestAuditUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{name: "disclosures without patient", args: []string{"audit", "disclosures"}},
		{name: "bad format", args: []string{"audit", "break-glass", "--format", "xml"}},
		{name: "bad since", args: []string{"audit", "break-glass", "--since", "yesterday"}},
		{name: "bad after-hours", args: []string{"audit", "anomalies", "--after-hours", "late"}},
		{name: "recertify without organization", args: []string{"audit", "recertify"}},
		{name: "review without note", args: []string{"audit", "review", "d-1", "--by", "x"}},
		{name: "keygen without -o", args: []string{"audit", "keygen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if code, _, stderr := runAudit(t, tt.args...); code != 2 {
				t.Fatalf("exit %d, want 2: %s", code, stderr)
			}
		})
	}
}

func TestAuditRedis(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	url := "redis://" + addr
	key := filepath.Join(t.TempDir(), "audit")
	runAudit(t, "audit", "keygen", "-o", key)
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	af := addAuditFlags(fs)
	if err := fs.Parse([]string{"--audit-redis", url, "--audit-stream", "chaperone:audit:r1", "--audit-key", key + ".pem",
		"--audit-instance", "r1", "--audit-anchor", url, "--audit-ack", "durable"}); err != nil {
		t.Fatal(err)
	}
	l, err := af.open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range sampleDecisions() {
		req, resp := d.messages(i)
		if err := l.Record(context.Background(), "", req, resp); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runAudit(t, "audit", "verify", "--redis", url, "--pub", key+".pub.pem")
	if code != 0 || !strings.Contains(stdout, "chaperone:audit:r1: intact: ") {
		t.Fatalf("verify --redis: %d %s %s", code, stdout, stderr)
	}
	// The anchor in Redis (default key chaperone:audit-anchor:r1) is reached;
	// an anchor claiming more than the stream holds is not.
	for _, args := range [][]string{
		{"--anchor", url, "--instance", "r1"},
		{"--anchor", url + "?key=chaperone:audit-anchor:r1"},
	} {
		code, stdout, stderr := runAudit(t, append([]string{"audit", "verify", "--redis", url, "--stream", "chaperone:audit:r1", "--pub", key + ".pub.pem"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "reaches the anchored head") {
			t.Fatalf("verify --anchor %v: %d %s %s", args, code, stdout, stderr)
		}
	}
	if code, _, stderr := runAudit(t, "audit", "verify", "--redis", url, "--stream", "chaperone:audit:r1", "--pub", key+".pub.pem", "--anchor", url); code != 2 || !strings.Contains(stderr, "--instance") {
		t.Fatalf("verify --anchor redis without a key or instance: %d %s", code, stderr)
	}
	if code, _, stderr := runAudit(t, "audit", "review", "d-2", "--by", "po", "--note", "ok", "--key", key+".pem", "--redis", url); code != 0 {
		t.Fatalf("review --redis: %d %s", code, stderr)
	}
	code, stdout, _ = runAudit(t, "audit", "break-glass", "--unreviewed", "--redis", url, "--format", "json")
	if code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("break-glass --redis: %d %s", code, stdout)
	}
}

func mustOpen(t *testing.T, path string) *audit.FileSink {
	t.Helper()
	s, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
