package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// waitUntil polls cond every 5 ms for at most 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 2000 {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWriterHaltsWhenTheLogMovesBack: a running log whose file is
// truncated, deleted or replaced under it stops for good: every later
// Record fails with ErrUnavailable, Healthy and Stats say so, and nothing
// more is written to the file (it never continues from the cut, nor starts
// a new chain at seq 1).
func TestWriterHaltsWhenTheLogMovesBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(t *testing.T, path string)
	}{
		{name: "truncated", tamper: func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			lines := bytes.SplitAfter(b, []byte("\n"))
			writeFile(t, path+".tmp", nil)
			if err := os.Truncate(path, int64(len(bytes.Join(lines[:len(lines)/2], nil)))); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated to nothing", tamper: func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "deleted", tamper: func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by a longer log", tamper: func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.jsonl")
			writeLog(t, other, newSigner(t), 0, 100)
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			signer := newSigner(t)
			l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithSyncDelay(0), audit.WithCheckpoints(5, time.Hour))
			record(t, l, 0, 20)
			waitUntil(t, "20 records written", func() bool { return l.Stats().Written >= 21 })
			if err := l.Healthy(); err != nil {
				t.Fatalf("Healthy before = %v", err)
			}
			tt.tamper(t, path)
			before, _ := os.ReadFile(path)
			// The next append finds the head moved back and halts; a
			// record may be taken before the writer notices.
			req, resp := decision(20)
			_ = l.Record(context.Background(), "test", req, resp)
			waitUntil(t, "halted", func() bool { return l.Stats().Halted })
			for i := 21; i < 25; i++ {
				req, resp := decision(i)
				if err := l.Record(context.Background(), "test", req, resp); !errors.Is(err, audit.ErrHalted) || !errors.Is(err, audit.ErrUnavailable) {
					t.Fatalf("Record after the halt = %v, want ErrHalted (ErrUnavailable)", err)
				}
			}
			if err := l.Healthy(); !errors.Is(err, audit.ErrRewound) {
				t.Errorf("Healthy = %v, want ErrRewound", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := l.Close(ctx); err == nil {
				t.Error("Close after a halt = nil, want the records not written counted")
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Errorf("the log was written after it moved back:\n%s", after[len(before):])
			}
		})
	}
}

// TestRestartRefusesACutLog: with an anchor, a server restarted on a log
// cut below the anchored head halts instead of blessing the cut with a
// restart record; the anchored log itself verifies and the cut one fails
// verification against the anchor.
func TestRestartRefusesACutLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, anchorPath := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "anchor", "audit.anchor")
	signer := newSigner(t)
	anchor := audit.NewFileAnchor(anchorPath)
	lines := writeLog(t, path, signer, 0, 50, audit.WithCheckpoints(10, time.Hour), audit.WithAnchor(anchor))
	h, ok, err := anchor.Last(context.Background())
	if err != nil || !ok || h.Seq != uint64(len(lines)) || !h.Closed || h.Hash != hashOf(t, lines[len(lines)-1]) {
		t.Fatalf("anchor = %+v, %v, %v; want the clean-shutdown checkpoint seq %d", h, ok, err, len(lines))
	}
	if err := h.Verify(signer.Public()); err != nil {
		t.Fatalf("anchor signature: %v", err)
	}
	verify := func() error {
		_, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: []ed25519.PublicKey{signer.Public()}, AllowOpenTail: true, Anchor: &audit.Head{Seq: h.Seq, Hash: h.Hash}})
		return err
	}
	if err := verify(); err != nil {
		t.Fatalf("anchored log: %v", err)
	}
	// A restart continues and moves the anchor on.
	writeLog(t, path, signer, 100, 5, audit.WithAnchor(anchor))
	h, _, _ = anchor.Last(context.Background())
	if err := verify(); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	// Cut at a checkpoint, then restart.
	all := readLines(t, path)
	writeFile(t, path, bytes.Join(all[:len(all)-20], nil))
	if err := verify(); !errors.Is(err, audit.ErrAnchor) {
		t.Fatalf("cut log: %v, want ErrAnchor", err)
	}
	l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithAnchor(anchor))
	waitUntil(t, "halted", func() bool { return l.Stats().Halted })
	req, resp := decision(1)
	if err := l.Record(context.Background(), "test", req, resp); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Record on a cut log = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = l.Close(ctx)
	if n := len(readLines(t, path)); n != len(all)-20 {
		t.Fatalf("%d lines after the refused restart, want %d (nothing written)", n, len(all)-20)
	}
}

// TestDurableAck: with WithDurable, Record and RecordAll return only once
// the records are in the file; while the sink fails they wait and, at the
// caller's deadline, fail with ErrUnavailable (the decision is denied).
func TestDurableAck(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink := &flakySink{inner: openFile(t, path)}
	signer := newSigner(t)
	l := audit.New(sink, audit.WithSigner(signer), audit.WithDurable(true), audit.WithSyncDelay(time.Hour))
	inFile := func(id string) bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(`"decisionId":"`+id+`"`))
	}
	req, resp := decision(1)
	if err := l.Record(context.Background(), "test", req, resp); err != nil {
		t.Fatal(err)
	}
	if !inFile("d-1") {
		t.Fatal("Record returned before its record was in the file")
	}
	reqs, resps := make([]*chaperonev1.CheckRequest, 200), make([]*chaperonev1.CheckResponse, 200)
	for i := range reqs {
		reqs[i], resps[i] = decision(100 + i)
	}
	if errs := l.RecordAll(context.Background(), "test", reqs, resps); errs != nil {
		t.Fatalf("RecordAll: %v", errs)
	}
	for i := range reqs {
		if !inFile(resps[i].GetDecisionId()) {
			t.Fatalf("RecordAll returned before %s was in the file", resps[i].GetDecisionId())
		}
	}
	sink.fail.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, resp = decision(2)
	if err := l.Record(ctx, "test", req, resp); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Record while the sink fails = %v, want ErrUnavailable", err)
	}
	errs := l.RecordAll(ctx, "test", reqs[:3], resps[:3])
	if len(errs) != 3 || !errors.Is(errs[0], audit.ErrUnavailable) {
		t.Fatalf("RecordAll while the sink fails = %v", errs)
	}
	sink.fail.Store(false)
	closeLog(t, l)
	verifyFile(t, path, 1+200+1+3, signer)
}

// TestTornLastLine: a crash in the middle of a write leaves a last line
// without its newline; it is an open tail (accepted with AllowOpenTail),
// never a record, and a torn line before the end fails.
func TestTornLastLine(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	lines := writeLog(t, path, signer, 0, 30, audit.WithCheckpoints(10, time.Hour))
	torn := bytes.Join(lines[:len(lines)-3], nil)
	torn = append(torn, lines[len(lines)-3][:40]...)
	writeFile(t, path, torn)
	keys := []ed25519.PublicKey{signer.Public()}
	if _, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: keys}); !errors.Is(err, audit.ErrOpenTail) {
		t.Fatalf("torn last line: %v, want ErrOpenTail", err)
	}
	s, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: keys, AllowOpenTail: true})
	kept := 0
	for _, l := range lines[:len(lines)-3] {
		if kindOf(t, l) == "decision" {
			kept++
		}
	}
	if err != nil || s.TornTail == "" || s.Decisions != uint64(kept) {
		t.Fatalf("torn last line, open tail allowed: %+v, %v", s, err)
	}
	// The writer cuts it off and continues.
	writeLog(t, path, signer, 100, 3)
	verifyFile(t, path, uint64(kept+3), signer)
	// A torn line followed by more lines (a segment cut short) fails.
	writeFile(t, path+".00000000000000000001", torn)
	if _, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: keys, AllowOpenTail: true}); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("torn line inside the log: %v, want tampering", err)
	}
}

// TestRestartRefusesAReplacedLog: a log replaced, while its server was
// down, by a longer one (more records than the anchored head) is refused
// at start: the record at the anchored place is not the anchored one.
func TestRestartRefusesAReplacedLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	signer := newSigner(t)
	anchor := audit.NewFileAnchor(filepath.Join(dir, "anchor"))
	l0 := audit.New(openFile(t, path, audit.WithMaxFileSize(2048)), audit.WithSigner(signer), audit.WithAnchor(anchor))
	record(t, l0, 0, 10)
	closeLog(t, l0)
	// Another log of the same key, longer, in its place.
	other := filepath.Join(t.TempDir(), "other.jsonl")
	longer := writeLog(t, other, signer, 500, 60)
	for _, seg := range mustGlob(t, path+".0*") {
		os.Remove(seg)
	}
	writeFile(t, path, bytes.Join(longer, nil))
	l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithAnchor(anchor))
	req, resp := decision(1)
	_ = l.Record(context.Background(), "test", req, resp)
	waitUntil(t, "halted", func() bool { return l.Stats().Halted })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = l.Close(ctx)
	if n := len(readLines(t, path)); n != len(longer) {
		t.Fatalf("%d lines, want %d: the refused log was written to", n, len(longer))
	}
	// The genuine log, rotated, is taken up: the anchored record is found
	// in its segment.
	path2 := filepath.Join(dir, "b.jsonl")
	anchor2 := audit.NewFileAnchor(filepath.Join(dir, "anchor2"))
	l1 := audit.New(openFile(t, path2, audit.WithMaxFileSize(2048)), audit.WithSigner(signer), audit.WithAnchor(anchor2), audit.WithCheckpoints(5, time.Hour), audit.WithBatchSize(3))
	record(t, l1, 0, 40)
	closeLog(t, l1)
	if len(mustGlob(t, path2+".0*")) < 2 {
		t.Fatal("the genuine log did not rotate")
	}
	l2 := audit.New(openFile(t, path2, audit.WithMaxFileSize(2048)), audit.WithSigner(signer), audit.WithAnchor(anchor2))
	record(t, l2, 100, 105)
	closeLog(t, l2)
	if l2.Stats().Halted {
		t.Fatal("the genuine log was refused")
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
