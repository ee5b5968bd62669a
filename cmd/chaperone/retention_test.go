package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
)

func TestParseRetention(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		all     bool
		wantErr bool
	}{
		{in: "", all: true},
		{in: "forever", all: true},
		{in: "6y", want: time.Date(2020, 12, 1, 0, 0, 0, 0, time.UTC)},
		{in: "90d", want: now.AddDate(0, 0, -90)},
		{in: "1y30d", want: time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)},
		{in: "48h", want: now.Add(-48 * time.Hour)},
		{in: "0y", wantErr: true},
		{in: "-1y", wantErr: true},
		{in: "six years", wantErr: true},
		{in: "6x", wantErr: true},
	}
	for _, tc := range tests {
		r, err := parseRetention(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: accepted", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if r.keepsAll() != tc.all || (!tc.all && !r.cutoff(now).Equal(tc.want)) {
			t.Errorf("%q: keeps all %v, cutoff %s, want %s", tc.in, r.keepsAll(), r.cutoff(now), tc.want)
		}
	}
}

// retentionTestLog writes a signed log rotated in small segments, 30
// decisions in March 2019 and 30 in November 2026, and returns its path and
// key prefix.
func retentionTestLog(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "audit")
	if code, _, stderr := runAudit(t, "audit", "keygen", "-o", key); code != 0 {
		t.Fatal(stderr)
	}
	signer, err := audit.LoadSigner(key + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	var clock atomic.Int64
	for _, at := range []time.Time{time.Date(2019, 3, 1, 9, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)} {
		sink, err := audit.OpenFile(path, audit.WithMaxFileSize(2500))
		if err != nil {
			t.Fatal(err)
		}
		l := audit.New(sink, audit.WithSigner(signer), audit.WithBatchSize(1), audit.WithCheckpoints(5, time.Hour),
			audit.WithClock(func() time.Time { return time.Unix(0, clock.Load()).UTC() }))
		for i := range 30 {
			clock.Store(at.Add(time.Duration(i) * time.Minute).UnixNano())
			d := auditDecision{"Practitioner/p1", "Organization/o1", "clinician", "Patient/52", "Observation", "o1", "TREAT", "", true, at}
			req, resp := d.messages(i)
			if err := l.Record(context.Background(), "", req, resp); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return path, key
}

// TestAuditPruneCommand: a dry run changes nothing; prune --archive moves
// the 2019 segments and records itself; verify --pub starts from the
// anchor; an edit of what remains is still caught; a signed log is not
// pruned without its key.
func TestAuditPruneCommand(t *testing.T) {
	t.Parallel()
	path, key := retentionTestLog(t)
	segs, _ := filepath.Glob(path + ".0*")
	if code, out, stderr := runAudit(t, "audit", "prune", "--file", path, "--before", "2020-01-01"); code != 2 || !strings.Contains(stderr, "signing key") {
		t.Errorf("prune of a signed log without --key: %d %s %s", code, out, stderr)
	}
	code, out, stderr := runAudit(t, "audit", "prune", "--file", path, "--before", "2020-01-01", "--key", key+".pem", "--dry-run")
	if code != 0 || !strings.Contains(out, "would prune") {
		t.Fatalf("dry run: %d %s %s", code, out, stderr)
	}
	if now, _ := filepath.Glob(path + ".0*"); len(now) != len(segs) {
		t.Fatal("the dry run removed segments")
	}
	archive := filepath.Join(t.TempDir(), "archive")
	code, out, stderr = runAudit(t, "audit", "prune", "--file", path, "--before", "2020-01-01", "--key", key+".pem", "--archive", archive)
	if code != 0 || !strings.Contains(out, "archived to") || !strings.Contains(out, "the log now starts at seq") {
		t.Fatalf("prune: %d %s %s", code, out, stderr)
	}
	moved, _ := filepath.Glob(filepath.Join(archive, "*"))
	if len(moved) == 0 {
		t.Error("nothing in the archive")
	}
	code, out, stderr = runAudit(t, "audit", "verify", "--file", path, "--pub", key+".pub.pem")
	if code != 0 || !strings.Contains(out, "pruned: records 1..") || !strings.Contains(out, "closed cleanly") {
		t.Fatalf("verify after prune: %d %s %s", code, out, stderr)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"kind":"prune"`) {
		t.Error("no prune record on the chain")
	}
	// What remains is still protected.
	remaining, _ := filepath.Glob(path + ".0*")
	b, err := os.ReadFile(remaining[len(remaining)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(remaining[len(remaining)-1], []byte(strings.Replace(string(b), "TREAT", "HRESCH", 1)), 0o640); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runAudit(t, "audit", "verify", "--file", path, "--pub", key+".pub.pem"); code != 1 || !strings.Contains(out+stderr, "TAMPERED") {
		t.Errorf("verify of edited remains: exit %d %s %s", code, out, stderr)
	}
	if code, _, stderr := runAudit(t, "audit", "prune", "--file", path, "--before", "2030-01-01", "--key", key+".pem"); code != 1 || !strings.Contains(stderr, "does not verify") {
		t.Errorf("prune of a tampered log: exit %d %s", code, stderr)
	}
}

// TestRetentionSchedule: serve's retention job with an injected clock and
// ticks: nothing is past six years in January 2025; at the tick of January
// 2026 the 2019 segments go, the prune is recorded by the running log, and
// the log verifies.
func TestRetentionSchedule(t *testing.T) {
	t.Parallel()
	path, key := retentionTestLog(t)
	signer, err := audit.LoadSigner(key + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(path + ".0*")
	var clock atomic.Int64
	clock.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSigner(signer), audit.WithClock(now))
	keep, _ := parseRetention("6y")
	j := &retentionJob{path: path, keep: keep, signer: signer, log: l, logger: slog.New(slog.DiscardHandler), now: now}
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); j.run(ctx, ticks) }()
	ticks <- now() // the first run (at start) is over once this is taken
	if left, _ := filepath.Glob(path + ".0*"); len(left) != len(segs) {
		t.Fatalf("pruned in 2025: %d of %d segments left", len(left), len(segs))
	}
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	ticks <- now()
	ticks <- now() // the 2026 run is over
	cancel()
	<-done
	left, _ := filepath.Glob(path + ".0*")
	if len(left) >= len(segs) {
		t.Fatalf("nothing pruned in 2026: %d segments", len(left))
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runAudit(t, "audit", "verify", "--file", path, "--pub", key+".pub.pem")
	if code != 0 || !strings.Contains(out, "pruned: records 1..") {
		t.Fatalf("verify: %d %s %s", code, out, stderr)
	}
	raw, _ := os.ReadFile(path)
	if strings.Count(string(raw), `"kind":"prune"`) != 1 {
		t.Error("the scheduled prune was not recorded once")
	}
}
