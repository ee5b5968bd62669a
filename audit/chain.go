package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"
)

// Genesis is the prev hash of the first record of a chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Head is the end of a chain: the sequence number and hash of its last
// record ({0, Genesis} for an empty chain).
type Head struct {
	Seq  uint64
	Hash string
}

// GenesisHead is the head of an empty chain.
var GenesisHead = Head{Seq: 0, Hash: Genesis}

// Sealed is a chained record as stored: one line of JSON (without the
// newline) whose last field is its hash.
type Sealed struct {
	Seq  uint64
	Hash string
	Line []byte
}

// Batch is records waiting to be chained. A [Sink] seals it onto the head it
// finds, under whatever lock makes its append atomic, so records are chained
// in the order they are stored even with several writers.
type Batch struct {
	recs   []Record
	signer *Signer
}

// NewBatch returns a batch of recs; checkpoint records among them are signed
// by signer when sealed.
func NewBatch(signer *Signer, recs ...Record) *Batch { return &Batch{recs: recs, signer: signer} }

// Len is the number of records.
func (b *Batch) Len() int { return len(b.recs) }

// Seal chains the records onto head: it numbers them, links each to the one
// before, fills and signs checkpoints and hashes every line.
func (b *Batch) Seal(head Head) ([]Sealed, Head, error) {
	_, out, head, err := b.sealInto(nil, head)
	return out, head, err
}

// sealInto is Seal writing every line, each followed by a newline, to one
// buffer (appended to buf and returned); the lines of the result are
// slices of it.
func (b *Batch) sealInto(buf []byte, head Head) ([]byte, []Sealed, Head, error) {
	out := make([]Sealed, len(b.recs))
	starts := make([]int, len(b.recs))
	buf = slices.Grow(buf, len(b.recs)*typicalLine)
	for i := range b.recs {
		r := b.recs[i] // a copy: a batch may be sealed again after a failed append
		r.Seq, r.Prev = head.Seq+1, head.Hash
		if r.Kind == KindCheckpoint {
			if b.signer == nil {
				return buf, nil, head, errors.New("checkpoint without a signing key")
			}
			r.Checkpoint = b.signer.sign(head, r.Time)
		}
		starts[i] = len(buf)
		var (
			hash string
			err  error
		)
		buf, hash, err = appendSealed(buf, &r)
		if err != nil {
			return buf, nil, head, err
		}
		buf = append(buf, '\n')
		out[i] = Sealed{Seq: r.Seq, Hash: hash}
		head = Head{Seq: r.Seq, Hash: hash}
	}
	for i := range out { // buf has stopped moving
		end := len(buf)
		if i+1 < len(out) {
			end = starts[i+1]
		}
		out[i].Line = buf[starts[i] : end-1 : end-1]
	}
	return buf, out, head, nil
}

const hashField = `,"hash":"`

// typicalLine is about the length of a decision record's line, to size
// buffers.
const typicalLine = 640

// hashSuffixLen is the length of `,"hash":"<64 hex>"}`.
const hashSuffixLen = len(hashField) + 64 + 2

// appendSealed appends the line of r: its JSON with the hash appended as
// the last field. The hash is the SHA-256 of the JSON without the hash
// field, which is the line with the suffix replaced by "}".
func appendSealed(dst []byte, r *Record) ([]byte, string, error) {
	start := len(dst)
	dst, err := appendRecord(dst, r)
	if err != nil {
		return dst[:start], "", fmt.Errorf("encode record %d: %w", r.Seq, err)
	}
	sum := sha256.Sum256(dst[start:])
	var digest [64]byte
	for i, b := range sum {
		digest[2*i], digest[2*i+1] = hexDigits[b>>4], hexDigits[b&0xF]
	}
	dst = append(dst[:len(dst)-1], hashField...)
	dst = append(dst, digest[:]...)
	dst = append(dst, '"', '}')
	return dst, string(digest[:]), nil
}

// unseal checks a stored line against its own hash and decodes it.
func unseal(line []byte) (*Record, string, error) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < hashSuffixLen+2 || !bytes.Equal(line[len(line)-hashSuffixLen:len(line)-hashSuffixLen+len(hashField)], []byte(hashField)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, "", fmt.Errorf("%w: no hash field at the end of the line", ErrMalformed)
	}
	hash := string(line[len(line)-66 : len(line)-2])
	body := make([]byte, 0, len(line)-hashSuffixLen+1)
	body = append(body, line[:len(line)-hashSuffixLen]...)
	body = append(body, '}')
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != hash {
		return nil, hash, ErrHashMismatch
	}
	var r Record
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, hash, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &r, hash, nil
}

// Sentinel errors of verification; a [*TamperError] wraps one of them and
// also matches [ErrTampered].
var (
	ErrTampered     = errors.New("audit chain tampered with")
	ErrMalformed    = errors.New("not a chained record")
	ErrHashMismatch = errors.New("contents do not match the record's hash (edited)")
	ErrBrokenLink   = errors.New("chain broken (record deleted, inserted or reordered)")
	ErrBadSignature = errors.New("checkpoint signature does not verify")
	ErrUnknownKey   = errors.New("checkpoint signed by an unknown key")
)

// TamperError names the first bad record of a chain.
type TamperError struct {
	Where      string // file:line or stream:id
	Seq        uint64 // the record's sequence number, when readable
	DecisionID string // when the record is a readable decision
	Detail     string
	Err        error // ErrMalformed, ErrHashMismatch, ErrBrokenLink, ErrBadSignature or ErrUnknownKey
}

func (e *TamperError) Error() string {
	s := "first bad record at " + e.Where
	if e.Seq != 0 {
		s += " (seq " + strconv.FormatUint(e.Seq, 10)
		if e.DecisionID != "" {
			s += ", decision " + e.DecisionID
		}
		s += ")"
	}
	s += ": " + e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *TamperError) Unwrap() error { return e.Err }

// Is makes every TamperError match [ErrTampered].
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// Entry is one stored line and where it was read.
type Entry struct {
	Where string
	Line  []byte
}

// Summary is what [Verify] found in an intact chain.
type Summary struct {
	Records          uint64 // every record, checkpoints included
	Decisions        uint64
	Reviews          uint64
	Drops            uint64 // decisions answered without a record (from drop records)
	Checkpoints      uint64
	Signed           uint64 // checkpoints whose signature was verified
	UnsignedTail     uint64 // records after the last verified checkpoint
	Head             Head
	LastCheckpointAt time.Time
}

// Verify walks a chain from its first record: each line must match its own
// hash, link to the one before and carry the next sequence number; each
// checkpoint must sign the head before it. With keys, checkpoint signatures
// are verified (a checkpoint by another key fails); without, they are only
// counted. It returns a [*TamperError] naming the first bad record, or the
// error of reading the entries.
func Verify(entries iter.Seq2[Entry, error], keys ...ed25519.PublicKey) (Summary, error) {
	byID := make(map[string]ed25519.PublicKey, len(keys))
	for _, k := range keys {
		byID[KeyID(k)] = k
	}
	var s Summary
	head := GenesisHead
	for e, err := range entries {
		if err != nil {
			return s, err
		}
		r, hash, err := unseal(e.Line)
		if err != nil {
			te := &TamperError{Where: e.Where, Seq: head.Seq + 1, Err: err}
			if errors.Is(err, ErrMalformed) {
				te.Detail, te.Err = err.Error(), ErrMalformed
			}
			if errors.Is(err, ErrHashMismatch) {
				// Name the record by what it claims to be, if it still parses.
				var claimed Record
				if json.Unmarshal(bytes.TrimRight(e.Line, "\r\n"), &claimed) == nil {
					te.Seq, te.DecisionID = claimed.Seq, claimed.DecisionID
				}
			}
			return s, te
		}
		bad := func(kind error, format string, args ...any) error {
			return &TamperError{Where: e.Where, Seq: r.Seq, DecisionID: r.DecisionID, Err: kind, Detail: fmt.Sprintf(format, args...)}
		}
		if r.Seq != head.Seq+1 {
			return s, bad(ErrBrokenLink, "sequence %d follows %d", r.Seq, head.Seq)
		}
		if r.Prev != head.Hash {
			return s, bad(ErrBrokenLink, "prev %.12s… is not the hash of record %d (%.12s…)", r.Prev, head.Seq, head.Hash)
		}
		switch r.Kind {
		case KindDecision:
			s.Decisions++
		case KindReview:
			s.Reviews++
		case KindDrop:
			if r.Drop != nil {
				s.Drops += r.Drop.Count
			}
		case KindCheckpoint:
			cp := r.Checkpoint
			if cp == nil || cp.Count != head.Seq || cp.Head != head.Hash {
				return s, bad(ErrBrokenLink, "checkpoint does not sign the head before it")
			}
			s.Checkpoints++
			if len(keys) > 0 {
				k, ok := byID[cp.KeyID]
				if !ok {
					return s, bad(ErrUnknownKey, "key id %q", cp.KeyID)
				}
				if !ed25519.Verify(k, checkpointMessage(cp.Count, cp.Head, cp.Time), cp.Sig) {
					return s, bad(ErrBadSignature, "key id %q", cp.KeyID)
				}
				s.Signed++
				s.UnsignedTail = 0
				s.LastCheckpointAt = cp.Time
				head = Head{Seq: r.Seq, Hash: hash}
				s.Records++
				continue
			}
		}
		s.Records++
		s.UnsignedTail++
		head = Head{Seq: r.Seq, Hash: hash}
	}
	s.Head = head
	return s, nil
}
