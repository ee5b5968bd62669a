package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
)

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeChain records n decisions with a checkpoint every 4 records through
// a file log and returns the log's lines.
func writeChain(t *testing.T, n int, signer *audit.Signer) [][]byte {
	t.Helper()
	path := t.TempDir() + "/audit.jsonl"
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSigner(signer), audit.WithCheckpoints(4, time.Hour), audit.WithBatchSize(1))
	for i := range n {
		req, resp := decision(i)
		if err := l.Record(context.Background(), "", req, resp); err != nil {
			t.Fatal(err)
		}
	}
	closeLog(t, l)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func entries(lines [][]byte) func(func(audit.Entry, error) bool) {
	return func(yield func(audit.Entry, error) bool) {
		for i, l := range lines {
			if !yield(audit.Entry{Where: "log:" + itoa(i+1), Line: l}, nil) {
				return
			}
		}
	}
}

func itoa(i int) string { return fmt.Sprintf("%02d", i) }

// reseal recomputes a line's hash after an edit, as a forger would.
func reseal(t *testing.T, line []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	delete(m, "hash")
	body, _ := json.Marshal(m)
	// A careful forger writes the canonical encoding: the record's own
	// field order.
	var r audit.Record
	if err := json.Unmarshal(body, &r); err == nil {
		body, _ = json.Marshal(&r)
	}
	sum := sha256.Sum256(body)
	return append(append(body[:len(body)-1:len(body)-1], []byte(`,"hash":"`+hex.EncodeToString(sum[:])+`"}`)...), '\n')
}

func hashOf(t *testing.T, line []byte) string {
	t.Helper()
	var m struct{ Hash string }
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	return m.Hash
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	// A genesis, 10 decisions, checkpoints after records 4, 8 and a final
	// one: line 1 genesis, 2-5 decisions, 6 checkpoint, 7-10, 11
	// checkpoint, 12-13, 14 the clean-shutdown checkpoint.
	orig := writeChain(t, 10, signer)
	if len(orig) != 14 {
		t.Fatalf("chain has %d lines, want 14", len(orig))
	}
	clone := func() [][]byte {
		out := make([][]byte, len(orig))
		for i, l := range orig {
			out[i] = bytes.Clone(l)
		}
		return out
	}
	tests := []struct {
		name      string
		tamper    func([][]byte) [][]byte
		wantErr   error  // nil: intact
		wantWhere string // the first bad record
		noKeys    bool   // verify without the public key
	}{
		{name: "intact", tamper: func(l [][]byte) [][]byte { return l }},
		{name: "edited", wantErr: audit.ErrHashMismatch, wantWhere: "log:04", tamper: func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`"ALLOW"`), []byte(`"DENY"`), 1)
			return l
		}},
		{name: "edited and rehashed", wantErr: audit.ErrBrokenLink, wantWhere: "log:05", tamper: func(l [][]byte) [][]byte {
			l[3] = reseal(t, l[3], func(m map[string]any) { m["purposeOfUse"] = "HRESCH" })
			return l
		}},
		{name: "deleted", wantErr: audit.ErrBrokenLink, wantWhere: "log:04", tamper: func(l [][]byte) [][]byte {
			return append(l[:3], l[4:]...)
		}},
		{name: "genesis deleted", wantErr: audit.ErrBrokenLink, wantWhere: "log:01", tamper: func(l [][]byte) [][]byte {
			return l[1:]
		}},
		{name: "reordered", wantErr: audit.ErrBrokenLink, wantWhere: "log:03", tamper: func(l [][]byte) [][]byte {
			l[2], l[3] = l[3], l[2]
			return l
		}},
		{name: "inserted copy", wantErr: audit.ErrBrokenLink, wantWhere: "log:05", tamper: func(l [][]byte) [][]byte {
			return append(l[:4], append([][]byte{bytes.Clone(l[2])}, l[4:]...)...)
		}},
		// The forgery itself links; the record after it is the first that cannot.
		{name: "inserted forgery linked to its predecessor", wantErr: audit.ErrBrokenLink, wantWhere: "log:06", tamper: func(l [][]byte) [][]byte {
			forged := reseal(t, l[3], func(m map[string]any) {
				m["seq"], m["prev"], m["decisionId"] = 5, hashOf(t, l[3]), "d-forged"
			})
			return append(l[:4], append([][]byte{forged}, l[4:]...)...)
		}},
		{name: "malformed line", wantErr: audit.ErrMalformed, wantWhere: "log:07", tamper: func(l [][]byte) [][]byte {
			l[6] = []byte("{\"seq\":7}\n")
			return l
		}},
		{name: "checkpoint signature altered", wantErr: audit.ErrBadSignature, wantWhere: "log:06", tamper: func(l [][]byte) [][]byte {
			l[5] = reseal(t, l[5], func(m map[string]any) {
				cp := m["checkpoint"].(map[string]any)
				cp["time"] = "2030-01-01T00:00:00Z"
			})
			return l
		}},
		{name: "tail rewritten with recomputed hashes", wantErr: audit.ErrBadSignature, wantWhere: "log:11", tamper: rewriteFrom(t, 7)},
		{name: "tail rewritten, no key: undetectable", noKeys: true, tamper: rewriteFrom(t, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines := tt.tamper(clone())
			var (
				s   audit.Summary
				err error
			)
			if tt.noKeys {
				s, err = audit.Verify(entries(lines))
			} else {
				s, err = audit.Verify(entries(lines), signer.Public())
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if s.Decisions != 10 {
					t.Errorf("Decisions = %d, want 10", s.Decisions)
				}
				return
			}
			var te *audit.TamperError
			if !errors.As(err, &te) || !errors.Is(err, tt.wantErr) || !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("Verify = %v, want a TamperError of %v", err, tt.wantErr)
			}
			if te.Where != tt.wantWhere {
				t.Errorf("first bad record at %s, want %s (%v)", te.Where, tt.wantWhere, err)
			}
		})
	}
}

// rewriteFrom changes record i (1-based) and recomputes every hash after
// it, so the chain links again: only the next signed checkpoint tells.
func rewriteFrom(t *testing.T, i int) func([][]byte) [][]byte {
	return func(l [][]byte) [][]byte {
		l[i-1] = reseal(t, l[i-1], func(m map[string]any) { m["decision"] = "DENY" })
		for j := i; j < len(l); j++ {
			prev := hashOf(t, l[j-1])
			l[j] = reseal(t, l[j], func(m map[string]any) {
				m["prev"] = prev
				if cp, ok := m["checkpoint"].(map[string]any); ok {
					cp["head"] = prev
				}
				if op, ok := m["opening"].(map[string]any); ok {
					op["head"] = prev
				}
			})
		}
		return l
	}
}

func TestCheckpointKeys(t *testing.T) {
	t.Parallel()
	signer, other := newSigner(t), newSigner(t)
	lines := writeChain(t, 10, signer)
	tests := []struct {
		name       string
		keys       []ed25519.PublicKey
		wantErr    error
		wantSigned uint64
	}{
		{name: "right key", keys: []ed25519.PublicKey{signer.Public()}, wantSigned: 3},
		{name: "right key among others", keys: []ed25519.PublicKey{other.Public(), signer.Public()}, wantSigned: 3},
		// The genesis names the key: another key fails at record 1.
		{name: "other key only", keys: []ed25519.PublicKey{other.Public()}, wantErr: audit.ErrUnknownKey},
		{name: "no key: counted, not verified", wantSigned: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := audit.Verify(entries(lines), tt.keys...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (s.Signed != tt.wantSigned || s.Checkpoints != 3) {
				t.Errorf("Signed = %d, Checkpoints = %d; want %d, 3", s.Signed, s.Checkpoints, tt.wantSigned)
			}
		})
	}
}

// A key with the right id but the wrong bytes cannot occur; a signature
// made by another key under this key's id must fail.
func TestCheckpointForgedUnderKeyID(t *testing.T) {
	t.Parallel()
	signer := newSigner(t)
	lines := writeChain(t, 3, signer)
	last := len(lines) - 1
	forged := reseal(t, lines[last], func(m map[string]any) {
		cp := m["checkpoint"].(map[string]any)
		cp["sig"] = []byte(strings.Repeat("x", 64))
	})
	lines[last] = forged
	if _, err := audit.Verify(entries(lines), signer.Public()); !errors.Is(err, audit.ErrBadSignature) {
		t.Fatalf("Verify = %v, want ErrBadSignature", err)
	}
}
