package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
)

// stepClock is a clock that advances step at every reading.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// writeLog records n decisions (ids d-from … d-(from+n-1)) through a file
// log at path, closes it and returns the lines of the file.
func writeLog(t *testing.T, path string, signer *audit.Signer, from, n int, opts ...audit.Option) [][]byte {
	t.Helper()
	if signer != nil {
		opts = append([]audit.Option{audit.WithSigner(signer)}, opts...)
	}
	l := audit.New(openFile(t, path), append([]audit.Option{audit.WithInstance("pdp-1")}, opts...)...)
	record(t, l, from, from+n)
	closeLog(t, l)
	return readLines(t, path)
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// rechain recomputes the hash links of lines[from:] as a forger would after
// an edit, including the heads checkpoints and openings name (their
// signatures cannot be recomputed).
func rechain(t *testing.T, lines [][]byte, from int) [][]byte {
	t.Helper()
	for j := max(from, 0); j < len(lines); j++ {
		prev, seq := audit.Genesis, 0
		if j > 0 {
			prev, seq = hashOf(t, lines[j-1]), j
		}
		lines[j] = reseal(t, lines[j], func(m map[string]any) {
			m["prev"], m["seq"] = prev, seq+1
			for _, k := range []string{"checkpoint", "opening"} {
				if x, ok := m[k].(map[string]any); ok {
					x["head"], x["count"] = prev, seq
				}
			}
		})
	}
	return lines
}

func kindOf(t *testing.T, line []byte) string {
	t.Helper()
	var m struct{ Kind string }
	if err := jsonUnmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	return m.Kind
}

// without returns lines without the records of the given kind.
func without(t *testing.T, lines [][]byte, kind string) [][]byte {
	return slices.DeleteFunc(lines, func(l []byte) bool { return kindOf(t, l) == kind })
}

// TestVerifyForgedAndCutLogs: every way of cutting or forging a signed log
// an attacker without the private key has fails verification with the
// public key, naming the first bad record.
func TestVerifyForgedAndCutLogs(t *testing.T) {
	t.Parallel()
	signer, other := newSigner(t), newSigner(t)
	dir := t.TempDir()
	// 150 decisions, a checkpoint every 20 records: genesis, then
	// 20 decisions + checkpoint ×7, 10 decisions, the clean shutdown.
	orig := writeLog(t, filepath.Join(dir, "a.jsonl"), signer, 0, 150, audit.WithCheckpoints(20, time.Hour))
	if len(orig) != 1+150+8 {
		t.Fatalf("%d lines, want 159", len(orig))
	}
	otherLog := writeLog(t, filepath.Join(dir, "b.jsonl"), other, 0, 150, audit.WithCheckpoints(20, time.Hour))
	unsigned := writeLog(t, filepath.Join(dir, "c.jsonl"), nil, 0, 150)
	// The same key, another instance: a replica's log.
	replica := writeLog(t, filepath.Join(dir, "d.jsonl"), signer, 0, 150, audit.WithCheckpoints(20, time.Hour), audit.WithInstance("pdp-2"))
	clock := &stepClock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), step: 20 * time.Second}
	// A checkpoint at least every minute of record time: 1000 per count.
	byTime := writeLog(t, filepath.Join(dir, "e.jsonl"), signer, 0, 30, audit.WithCheckpoints(1000, time.Minute), audit.WithClock(clock.now))

	lineOf := func(lines [][]byte, id string) int {
		for i, l := range lines {
			if bytes.Contains(l, []byte(`"decisionId":"`+id+`"`)) {
				return i
			}
		}
		t.Fatalf("no decision %s", id)
		return 0
	}
	clone := func(lines [][]byte) [][]byte {
		out := make([][]byte, len(lines))
		for i, l := range lines {
			out[i] = bytes.Clone(l)
		}
		return out
	}
	tests := []struct {
		name      string
		lines     func() [][]byte
		opts      audit.VerifyOptions
		wantErr   error // nil: verifies
		wantWhere string
	}{
		{name: "intact", lines: func() [][]byte { return clone(orig) }},
		{name: "intact, cadence by time", lines: func() [][]byte { return clone(byTime) }},
		{name: "last 10 lines dropped", wantErr: audit.ErrOpenTail, lines: func() [][]byte {
			return clone(orig)[:len(orig)-10]
		}},
		{name: "last line (clean shutdown) dropped", wantErr: audit.ErrOpenTail, lines: func() [][]byte {
			return clone(orig)[:len(orig)-1]
		}},
		{name: "cut exactly at a checkpoint", wantErr: audit.ErrOpenTail, wantWhere: "log:127", lines: func() [][]byte {
			l := clone(orig)[:127]
			if kindOf(t, l[126]) != "checkpoint" {
				t.Fatalf("line 127 is a %s", kindOf(t, l[126]))
			}
			return l
		}},
		{name: "record 100 edited, chain recomputed, final checkpoint dropped", wantErr: audit.ErrBadSignature, lines: func() [][]byte {
			l := clone(orig)[:len(orig)-1]
			i := lineOf(l, "d-99")
			l[i] = reseal(t, l[i], func(m map[string]any) { m["decision"] = "DENY" })
			return rechain(t, l, i+1)
		}},
		{name: "record 100 edited, chain recomputed, every later checkpoint dropped", wantErr: audit.ErrCadence, lines: func() [][]byte {
			l := clone(orig)
			i := lineOf(l, "d-99")
			l[i] = reseal(t, l[i], func(m map[string]any) { m["decision"] = "DENY" })
			l = append(l[:i+1], without(t, l[i+1:], "checkpoint")...)
			return rechain(t, l, i+1)
		}},
		{name: "record 145 edited, chain recomputed, every later checkpoint dropped", wantErr: audit.ErrOpenTail, lines: func() [][]byte {
			l := clone(orig)
			i := lineOf(l, "d-145")
			l[i] = reseal(t, l[i], func(m map[string]any) { m["decision"] = "DENY" })
			l = append(l[:i+1], without(t, l[i+1:], "checkpoint")...)
			return rechain(t, l, i+1)
		}},
		{name: "every checkpoint removed, chain recomputed", wantErr: audit.ErrCadence, wantWhere: "log:22", lines: func() [][]byte {
			return rechain(t, without(t, clone(orig), "checkpoint"), 1)
		}},
		{name: "every checkpoint removed, chain recomputed, cadence by time", wantErr: audit.ErrCadence, wantWhere: "log:04", lines: func() [][]byte {
			return rechain(t, without(t, clone(byTime), "checkpoint"), 1)
		}},
		{name: "every checkpoint and the genesis removed, chain recomputed", wantErr: audit.ErrNoGenesis, wantWhere: "log:01", lines: func() [][]byte {
			return rechain(t, without(t, without(t, clone(orig), "checkpoint"), "genesis"), 0)
		}},
		{name: "replaced by a log signed with another key", wantErr: audit.ErrUnknownKey, wantWhere: "log:01", lines: func() [][]byte {
			return clone(otherLog)
		}},
		{name: "replaced by an unsigned log", wantErr: audit.ErrNoGenesis, wantWhere: "log:01", lines: func() [][]byte {
			return clone(unsigned)
		}},
		{name: "replaced by a replica's log (same key), instance checked", wantErr: audit.ErrInstance, wantWhere: "log:01",
			opts: audit.VerifyOptions{Instance: "pdp-1"}, lines: func() [][]byte { return clone(replica) }},
		{name: "genesis re-signed by another key", wantErr: audit.ErrUnknownKey, wantWhere: "log:01", lines: func() [][]byte {
			l := clone(orig)
			l[0] = otherLog[0]
			return rechain(t, l, 1)
		}},
		{name: "genesis edited (instance)", wantErr: audit.ErrBadSignature, wantWhere: "log:01", lines: func() [][]byte {
			l := clone(orig)
			l[0] = reseal(t, l[0], func(m map[string]any) { m["opening"].(map[string]any)["instance"] = "pdp-9" })
			return rechain(t, l, 1)
		}},
		{name: "genesis edited (cadence loosened)", wantErr: audit.ErrBadSignature, wantWhere: "log:01", lines: func() [][]byte {
			l := clone(orig)
			l[0] = reseal(t, l[0], func(m map[string]any) { m["opening"].(map[string]any)["checkpointEvery"] = 1e6 })
			return rechain(t, l, 1)
		}},
		{name: "a second genesis in the middle", wantErr: audit.ErrBrokenLink, wantWhere: "log:51", lines: func() [][]byte {
			l := clone(orig)
			l = slices.Insert(l, 50, bytes.Clone(l[0]))
			return rechain(t, l, 50)
		}},
		{name: "a restart forged in the middle", wantErr: audit.ErrBadSignature, wantWhere: "log:51", lines: func() [][]byte {
			l := clone(orig)
			forged := reseal(t, l[0], func(m map[string]any) { m["kind"] = "restart" })
			l = slices.Insert(l, 50, forged)
			return rechain(t, l, 50)
		}},
		{name: "clean-shutdown marker stripped", wantErr: audit.ErrBadSignature, wantWhere: "log:159", lines: func() [][]byte {
			l := clone(orig)
			l[158] = reseal(t, l[158], func(m map[string]any) { delete(m["checkpoint"].(map[string]any), "closed") })
			return l
		}},
		{name: "clean-shutdown marker forged on a cut", wantErr: audit.ErrBadSignature, wantWhere: "log:127", lines: func() [][]byte {
			l := clone(orig)[:127]
			l[126] = reseal(t, l[126], func(m map[string]any) { m["checkpoint"].(map[string]any)["closed"] = true })
			return l
		}},
		{name: "a record appended after the clean shutdown", wantErr: audit.ErrAfterClose, wantWhere: "log:160", lines: func() [][]byte {
			l := clone(orig)
			l = append(l, bytes.Clone(l[1]))
			return rechain(t, l, 159)
		}},
		{name: "two records reordered and rechained", wantErr: audit.ErrBadSignature, lines: func() [][]byte {
			l := clone(orig)
			l[30], l[31] = l[31], l[30]
			return rechain(t, l, 30)
		}},
		{name: "records deleted and rechained", wantErr: audit.ErrBadSignature, lines: func() [][]byte {
			l := clone(orig)
			l = append(l[:30], l[33:]...)
			return rechain(t, l, 30)
		}},
		{name: "last 10 lines dropped, open tail allowed: only an anchor tells", opts: audit.VerifyOptions{AllowOpenTail: true},
			lines: func() [][]byte { return clone(orig)[:len(orig)-10] }},
		{name: "last 10 lines dropped, anchored head", wantErr: audit.ErrAnchor,
			opts:  audit.VerifyOptions{AllowOpenTail: true, Anchor: &audit.Head{Seq: 159, Hash: hashOf(t, orig[158])}},
			lines: func() [][]byte { return clone(orig)[:len(orig)-10] }},
		{name: "anchored head differs", wantErr: audit.ErrAnchor, wantWhere: "log:127",
			opts:  audit.VerifyOptions{Anchor: &audit.Head{Seq: 127, Hash: hashOf(t, orig[125])}},
			lines: func() [][]byte { return clone(orig) }},
		{name: "anchored head reached", opts: audit.VerifyOptions{Anchor: &audit.Head{Seq: 127, Hash: hashOf(t, orig[126])}},
			lines: func() [][]byte { return clone(orig) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.Keys = []ed25519.PublicKey{signer.Public()}
			s, err := audit.VerifyWith(entries(tt.lines()), opts)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("VerifyWith: %v", err)
				}
				if s.Genesis == nil || s.Genesis.Instance != "pdp-1" {
					t.Errorf("Genesis = %+v, want instance pdp-1", s.Genesis)
				}
				return
			}
			var te *audit.TamperError
			if !errors.As(err, &te) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyWith = %v, want a TamperError of %v", err, tt.wantErr)
			}
			if tt.wantWhere != "" && te.Where != tt.wantWhere {
				t.Errorf("first bad record at %s, want %s (%v)", te.Where, tt.wantWhere, err)
			}
		})
	}
}

// TestRestartContinuesTheChain: a server restarted on its log (after a
// clean shutdown or a crash) continues the chain with a signed restart
// record, and the log verifies.
func TestRestartContinuesTheChain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		crash bool // the first run ended without its final checkpoint
		n     int  // records of the first run (a checkpoint every 10)
	}{
		{name: "after a clean shutdown", n: 30},
		{name: "after a crash at a checkpoint", crash: true, n: 30},
		{name: "after a crash with an unanchored tail", crash: true, n: 35},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			signer := newSigner(t)
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			n := tt.n
			lines := writeLog(t, path, signer, 0, n, audit.WithCheckpoints(10, time.Hour))
			if tt.crash {
				lines = lines[:len(lines)-1] // no clean shutdown
				writeFile(t, path, bytes.Join(lines, nil))
				if _, err := audit.Verify(audit.ReadFiles(path), signer.Public()); !errors.Is(err, audit.ErrOpenTail) {
					t.Fatalf("crashed log: Verify = %v, want ErrOpenTail", err)
				}
			}
			writeLog(t, path, signer, 1000, 25, audit.WithCheckpoints(10, time.Hour))
			s := verifyFile(t, path, uint64(n+25), signer)
			if s.Restarts != 1 || !s.Closed || s.UnsignedTail != 0 {
				t.Errorf("Summary = %+v, want 1 restart, closed, no tail", s)
			}
			// A third run, with another cadence and key id: still one chain.
			other := newSigner(t)
			writeLog(t, path, other, 2000, 5, audit.WithCheckpoints(2, time.Hour))
			if _, err := audit.Verify(audit.ReadFiles(path), signer.Public(), other.Public()); err != nil {
				t.Fatalf("after a restart with another key: %v", err)
			}
			if _, err := audit.Verify(audit.ReadFiles(path), signer.Public()); !errors.Is(err, audit.ErrUnknownKey) {
				t.Fatalf("without the second key: %v, want ErrUnknownKey", err)
			}
		})
	}
}

// TestReviewJoinsTheChain: a guest writer (audit review) on a closed signed
// log leaves it verifiable and closed.
func TestReviewJoinsTheChain(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, signer, 0, 15, audit.WithCheckpoints(10, time.Hour))
	l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithJoin(true))
	if err := l.Review(context.Background(), "po", audit.Review{DecisionID: "d-3", By: "po", Note: "ok"}); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	s := verifyFile(t, path, 15, signer)
	if s.Reviews != 1 || !s.Closed {
		t.Errorf("Summary = %+v, want a review and a closed log", s)
	}
	// The server restarts after the review.
	writeLog(t, path, signer, 100, 5)
	verifyFile(t, path, 20, signer)
}

// TestRotatedLogCut: a log cut at a segment boundary (the live file or the
// newest segment deleted) or missing its first segment fails.
func TestRotatedLogCut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cut     func(t *testing.T, path string, segs []string)
		wantErr error
	}{
		{name: "intact"},
		{name: "live file deleted", wantErr: audit.ErrOpenTail, cut: func(t *testing.T, path string, _ []string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, nil)
		}},
		{name: "newest segment and live file deleted", wantErr: audit.ErrOpenTail, cut: func(t *testing.T, path string, segs []string) {
			os.Remove(segs[len(segs)-1])
			os.Remove(path)
			writeFile(t, path, nil)
		}},
		{name: "a middle segment deleted", wantErr: audit.ErrBrokenLink, cut: func(t *testing.T, _ string, segs []string) {
			os.Remove(segs[1])
		}},
		{name: "first segment deleted", wantErr: audit.ErrBrokenLink, cut: func(t *testing.T, _ string, segs []string) {
			os.Remove(segs[0])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			signer := newSigner(t)
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := audit.New(openFile(t, path, audit.WithMaxFileSize(8192)), audit.WithSigner(signer),
				audit.WithBatchSize(3), audit.WithCheckpoints(5, time.Hour))
			record(t, l, 0, 200)
			closeLog(t, l)
			segs, _ := filepath.Glob(path + ".0*")
			if len(segs) < 3 {
				t.Fatalf("%d segments", len(segs))
			}
			if tt.cut != nil {
				tt.cut(t, path, segs)
			}
			_, err := audit.Verify(audit.ReadFiles(path), signer.Public())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil && !errors.Is(err, audit.ErrTampered)) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestCutAtAnEarlierCleanShutdown: a log cut right after the clean shutdown
// of an earlier run (before a restart) is, by itself, the log as it was
// then: it verifies. Only the anchor proves there was more.
func TestCutAtAnEarlierCleanShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	signer := newSigner(t)
	anchor := audit.NewFileAnchor(filepath.Join(dir, "anchor"))
	first := writeLog(t, path, signer, 0, 20, audit.WithAnchor(anchor))
	writeLog(t, path, signer, 100, 20, audit.WithAnchor(anchor))
	h, _, _ := anchor.Last(context.Background())
	writeFile(t, path, bytes.Join(first, nil)) // the second run cut off
	keys := []ed25519.PublicKey{signer.Public()}
	if _, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: keys}); err != nil {
		t.Fatalf("without the anchor the cut log is a closed log: %v", err)
	}
	_, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: keys, Anchor: &audit.Head{Seq: h.Seq, Hash: h.Hash}})
	if !errors.Is(err, audit.ErrAnchor) {
		t.Fatalf("with the anchor: %v, want ErrAnchor", err)
	}
}

// TestPropertyCutsAndRewritesFail: on a closed signed log, every proper
// prefix, every deletion of a run of records, every edit of one record
// (the chain recomputed from there) and every swap of two records
// (recomputed) fails strict verification: seeded random cases, bounded.
func TestPropertyCutsAndRewritesFail(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	orig := writeLog(t, filepath.Join(t.TempDir(), "a.jsonl"), signer, 0, 60, audit.WithCheckpoints(7, time.Hour))
	keys := []ed25519.PublicKey{signer.Public()}
	if _, err := audit.VerifyWith(entries(orig), audit.VerifyOptions{Keys: keys}); err != nil {
		t.Fatal(err)
	}
	clone := func() [][]byte {
		out := make([][]byte, len(orig))
		for i, l := range orig {
			out[i] = bytes.Clone(l)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(7, 11))
	n := len(orig)
	for c := range 400 {
		var (
			lines [][]byte
			what  string
		)
		switch c % 4 {
		case 0:
			k := rng.IntN(n)
			lines, what = clone()[:k], "prefix of "+strconv.Itoa(k)
		case 1:
			i := rng.IntN(n)
			j := i + 1 + rng.IntN(min(5, n-i))
			lines = append(clone()[:i], clone()[j:]...)
			lines, what = rechain(t, lines, i), "lines "+strconv.Itoa(i+1)+"-"+strconv.Itoa(j)+" deleted, rechained"
		case 2:
			i := rng.IntN(n)
			lines = clone()
			edit := rng.IntN(3)
			lines[i] = reseal(t, lines[i], func(m map[string]any) {
				switch edit {
				case 0:
					m["time"] = "2031-01-01T00:00:00Z"
				case 1:
					m["kind"] = "review"
				default:
					m["decision"] = "DENY"
					m["decisionId"] = "d-forged"
				}
			})
			lines, what = rechain(t, lines, i+1), "line "+strconv.Itoa(i+1)+" edited, rechained"
		case 3:
			i, j := rng.IntN(n), rng.IntN(n)
			if i == j {
				continue
			}
			i, j = min(i, j), max(i, j)
			lines = clone()
			lines[i], lines[j] = lines[j], lines[i]
			lines, what = rechain(t, lines, i), "lines "+strconv.Itoa(i+1)+" and "+strconv.Itoa(j+1)+" swapped, rechained"
		}
		if _, err := audit.VerifyWith(entries(lines), audit.VerifyOptions{Keys: keys}); !errors.Is(err, audit.ErrTampered) {
			t.Fatalf("%s: VerifyWith = %v, want tampering", what, err)
		}
	}
}

// TestSignedRecordsAreCanonical: the clean-shutdown checkpoint, last in the
// log, respelt (an unknown field, spaces) with its hash recomputed fails.
func TestSignedRecordsAreCanonical(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	orig := writeLog(t, filepath.Join(t.TempDir(), "a.jsonl"), signer, 0, 5)
	last := len(orig) - 1
	if _, err := audit.Verify(entries(orig), signer.Public()); err != nil {
		t.Fatal(err)
	}
	for name, respelt := range map[string][]byte{
		"unknown field": bytes.Replace(orig[last], []byte(`"kind":"checkpoint"`), []byte(`"note":"x","kind":"checkpoint"`), 1),
		"spaces":        bytes.Replace(orig[last], []byte(`"kind":"checkpoint"`), []byte(`"kind": "checkpoint"`), 1),
		"escape":        bytes.Replace(orig[last], []byte(`"kind":"checkpoint"`), []byte(`"kind":"\u0063heckpoint"`), 1),
	} {
		lines := append([][]byte(nil), orig...)
		lines[last] = respace(t, respelt)
		if _, err := audit.Verify(entries(lines), signer.Public()); !errors.Is(err, audit.ErrHashMismatch) {
			t.Errorf("%s: Verify = %v, want ErrHashMismatch", name, err)
		}
	}
}

// respace recomputes the hash of a line whose body was respelt.
func respace(t *testing.T, line []byte) []byte {
	t.Helper()
	line = bytes.TrimRight(line, "\n")
	i := bytes.LastIndex(line, []byte(`,"hash":"`))
	body := append(bytes.Clone(line[:i]), '}')
	sum := sha256.Sum256(body)
	return append(append(body[:len(body)-1], []byte(`,"hash":"`+hex.EncodeToString(sum[:])+`"}`)...), '\n')
}
