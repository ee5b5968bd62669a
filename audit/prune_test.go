package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
)

var (
	old    = time.Date(2019, 3, 1, 9, 0, 0, 0, time.UTC)
	recent = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
)

// retentionLog writes a signed log in small segments: 40 decisions in 2019
// and 40 in 2026 (two writers, as across a restart).
func retentionLog(t *testing.T, signer *audit.Signer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	for _, at := range []time.Time{old, recent} {
		clock.Store(at.UnixNano())
		l := audit.New(openFile(t, path, audit.WithMaxFileSize(3000)), audit.WithSigner(signer), audit.WithClock(now),
			audit.WithCheckpoints(4, time.Hour), audit.WithBatchSize(1))
		for i := range 40 {
			clock.Store(at.Add(time.Duration(i) * time.Minute).UnixNano())
			record(t, l, i, i+1)
		}
		closeLog(t, l)
	}
	return path
}

func verifyPruned(path string, keys ...*audit.Signer) (audit.Summary, error) {
	anchors, err := audit.ReadPruneAnchors(path)
	if err != nil {
		return audit.Summary{}, err
	}
	o := audit.VerifyOptions{Pruned: anchors}
	for _, k := range keys {
		o.Keys = append(o.Keys, k.Public())
	}
	return audit.VerifyWith(audit.ReadFiles(path), o)
}

func segmentFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".0*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPrune: pruning the 2019 segments leaves a log that verifies from its
// signed anchor (with and without keys), whose 2026 records are intact;
// the prune is a record on the chain; an edit of what remains, a forged
// or missing anchor, and a key not given all fail verification.
func TestPrune(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	path := retentionLog(t, signer)
	before := segmentFiles(t, path)
	if len(before) < 4 {
		t.Fatalf("only %d segments", len(before))
	}
	full, err := verifyPruned(path, signer)
	if err != nil {
		t.Fatal(err)
	}
	cutoff := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

	dry, err := audit.PruneFile(path, audit.PruneOptions{Before: cutoff, DryRun: true, Signer: signer})
	if err != nil || len(dry.Segments) == 0 || dry.Record.Count == 0 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if got := segmentFiles(t, path); len(got) != len(before) {
		t.Fatalf("the dry run removed segments")
	}

	archive := filepath.Join(t.TempDir(), "archive")
	res, err := audit.PruneFile(path, audit.PruneOptions{Before: cutoff, Archive: archive, Signer: signer, Now: func() time.Time { return recent }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Segments) != len(dry.Segments) || res.Record.Count != dry.Record.Count {
		t.Errorf("prune %+v, dry run said %+v", res.Record, dry.Record)
	}
	for _, s := range res.Segments {
		if !s.LastTime.Before(cutoff) {
			t.Errorf("pruned a segment ending %s", s.LastTime)
		}
		if _, err := os.Stat(filepath.Join(archive, filepath.Base(s.Path))); err != nil {
			t.Errorf("not archived: %v", err)
		}
	}
	recs := readRecords(t, path)
	if recs[0].Seq != res.Record.Count+1 {
		t.Errorf("first kept record %d, pruned up to %d", recs[0].Seq, res.Record.Count)
	}
	for _, r := range recs {
		if r.Seq <= res.Record.Count {
			t.Errorf("record %d is still there", r.Seq)
		}
	}
	sum, err := verifyPruned(path, signer)
	if err != nil {
		t.Fatalf("verify after prune: %v", err)
	}
	if sum.Pruned == nil || sum.Pruned.Count != res.Record.Count || sum.Genesis == nil || !sum.Closed || sum.Decisions >= full.Decisions {
		t.Errorf("summary after prune: %+v (before %d decisions)", sum, full.Decisions)
	}
	if _, err := verifyPruned(path); err != nil {
		t.Errorf("verify after prune without keys: %v", err)
	}

	// The prune goes on the chain (a guest writer, as audit prune runs).
	l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithJoin(true))
	if err := l.RecordPrune(context.Background(), "local:op", res.Record); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	if _, err := verifyPruned(path, signer); err != nil {
		t.Fatalf("verify after the prune record: %v", err)
	}
	recs = readRecords(t, path)
	var noted *audit.Prune
	for _, r := range recs {
		if r.Kind == audit.KindPrune {
			noted = r.Prune
		}
	}
	if noted == nil || noted.Count != res.Record.Count || len(noted.Segments) != len(res.Segments) {
		t.Errorf("prune record %+v", noted)
	}

	anchorFile := audit.PruneAnchorsFile(path)
	anchorBytes, err := os.ReadFile(anchorFile)
	if err != nil {
		t.Fatal(err)
	}
	other := newSigner(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T)
		want   error
	}{
		{"edited record that remains", func(t *testing.T) {
			segs := segmentFiles(t, path)
			editLogLines(t, segs[len(segs)-1], func(ls []string) []string {
				for i := range ls {
					if strings.Contains(ls[i], `"kind":"decision"`) {
						ls[i] = strings.Replace(ls[i], "TREAT", "HRESCH", 1)
						return ls
					}
				}
				t.Fatal("no decision in the newest segment")
				return ls
			})
		}, audit.ErrHashMismatch},
		{"anchor deleted", func(t *testing.T) { _ = os.Remove(anchorFile) }, audit.ErrBrokenLink},
		{"anchor edited (cadence loosened)", func(t *testing.T) {
			editAnchors(t, anchorFile, func(a *audit.PruneAnchor) { a.Since = 0; a.Cadence.CheckpointEvery = 1000 })
		}, audit.ErrBadSignature},
		{"anchor forged with another key", func(t *testing.T) {
			editAnchors(t, anchorFile, func(a *audit.PruneAnchor) { a.KeyID = audit.KeyID(other.Public()) })
		}, audit.ErrUnknownKey},
	}
	for _, tc := range tests {
		// Each case starts from the pruned log as it is now.
		saved := map[string][]byte{}
		for _, f := range append(segmentFiles(t, path), path) {
			if saved[f], err = os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
		tc.tamper(t)
		if _, err := verifyPruned(path, signer); !errors.Is(err, tc.want) {
			t.Errorf("%s: verify = %v, want %v", tc.name, err, tc.want)
		}
		for f, b := range saved {
			if err := os.WriteFile(f, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(anchorFile, anchorBytes, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyPruned(path, signer); err != nil {
			t.Fatalf("after restoring %s: %v", tc.name, err)
		}
	}
}

func editAnchors(t *testing.T, file string, edit func(*audit.PruneAnchor)) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var a audit.PruneAnchor
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		edit(&a)
		nb, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(nb))
	}
	if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestPruneRefusesTamperedLog: a log that does not verify is not pruned,
// so the evidence stays.
func TestPruneRefusesTamperedLog(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	path := retentionLog(t, signer)
	segs := segmentFiles(t, path)
	b, err := os.ReadFile(segs[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segs[1], []byte(strings.Replace(string(b), "TREAT", "HRESCH", 1)), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = audit.PruneFile(path, audit.PruneOptions{Before: recent, Signer: signer})
	if !errors.Is(err, audit.ErrPruneRefused) || !errors.Is(err, audit.ErrHashMismatch) {
		t.Errorf("prune of a tampered log: %v", err)
	}
	if got := segmentFiles(t, path); len(got) != len(segs) {
		t.Errorf("segments removed from a tampered log: %d of %d left", len(got), len(segs))
	}
}

// TestPruneCrashBetweenAnchorAndRemoval: an anchor written for a segment
// still there (a crash before the removal) leaves a log that verifies.
func TestPruneCrashBetweenAnchorAndRemoval(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	path := retentionLog(t, signer)
	archive := t.TempDir()
	res, err := audit.PruneFile(path, audit.PruneOptions{Before: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Archive: archive, Signer: signer})
	if err != nil || len(res.Segments) < 2 {
		t.Fatalf("%+v %v", res, err)
	}
	// Put the newest pruned segment back: its anchor is there, it is too.
	last := res.Segments[len(res.Segments)-1].Path
	if err := os.Rename(filepath.Join(archive, filepath.Base(last)), last); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyPruned(path, signer); err != nil {
		t.Errorf("verify with a segment back behind its anchor: %v", err)
	}
}

func editLogLines(t *testing.T, path string, edit func([]string) []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := edit(strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"))
	if err := os.WriteFile(path, []byte(strings.Join(ls, "\n")+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
}
