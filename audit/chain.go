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
	floor  *Head       // the head may not be behind this one (see [ErrRewound])
	next   Head        // the head after the last successful seal
	anchor *AnchorHead // the last checkpoint of the last seal
}

// NewBatch returns a batch of recs; checkpoint records among them are signed
// by signer when sealed.
func NewBatch(signer *Signer, recs ...Record) *Batch { return &Batch{recs: recs, signer: signer} }

// ErrRewound means the head a batch was to be chained onto is behind the
// head its writer last wrote (the log was truncated, deleted or replaced
// under it). A writer that sees it stops for good.
var ErrRewound = fmt.Errorf("%w: the log's head moved backwards or the log was replaced", ErrUnavailable)

// requireFloor makes sealing fail with [ErrRewound] when the head found is
// behind floor: a lower sequence number, or the same with another hash.
func (b *Batch) requireFloor(floor Head) { b.floor = &floor }

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
	if f := b.floor; f != nil && (head.Seq < f.Seq || head.Seq == f.Seq && head.Hash != f.Hash) {
		return buf, nil, head, fmt.Errorf("%w: found seq %d (%.12s…), last written seq %d (%.12s…)", ErrRewound, head.Seq, head.Hash, f.Seq, f.Hash)
	}
	out := make([]Sealed, len(b.recs))
	starts := make([]int, len(b.recs))
	var anchor *AnchorHead
	buf = slices.Grow(buf, len(b.recs)*typicalLine)
	for i := range b.recs {
		r := b.recs[i] // a copy: a batch may be sealed again after a failed append
		r.Seq, r.Prev = head.Seq+1, head.Hash
		switch r.Kind {
		case KindCheckpoint:
			if b.signer == nil {
				return buf, nil, head, errors.New("checkpoint without a signing key")
			}
			r.Checkpoint = b.signer.sign(head, r.Time, r.Checkpoint != nil && r.Checkpoint.Closed)
		case KindGenesis, KindRestart:
			if b.signer == nil || r.Opening == nil {
				return buf, nil, head, errors.New("opening without a signing key")
			}
			r.Kind = KindGenesis
			if head.Seq > 0 {
				r.Kind = KindRestart
			}
			r.Opening = b.signer.signOpening(r.Kind, r.Opening, head, r.Time)
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
		if cp := r.Checkpoint; r.Kind == KindCheckpoint {
			anchor = &AnchorHead{Seq: r.Seq, Hash: hash, Count: cp.Count, Head: cp.Head, Time: cp.Time, KeyID: cp.KeyID, Sig: cp.Sig, Closed: cp.Closed}
		}
		head = Head{Seq: r.Seq, Hash: hash}
	}
	for i := range out { // buf has stopped moving
		end := len(buf)
		if i+1 < len(out) {
			end = starts[i+1]
		}
		out[i].Line = buf[starts[i] : end-1 : end-1]
	}
	b.next, b.anchor = head, anchor
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

// sealedBody is the JSON a stored line's hash covers (the line without its
// hash field); the line must have passed unseal.
func sealedBody(line []byte) []byte {
	line = bytes.TrimRight(line, "\r\n")
	body := make([]byte, 0, len(line)-hashSuffixLen+1)
	body = append(body, line[:len(line)-hashSuffixLen]...)
	return append(body, '}')
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
	ErrBadSignature = errors.New("signature does not verify")
	ErrUnknownKey   = errors.New("signed by a key not given (not the log the key signed)")
	ErrNoGenesis    = errors.New("the log does not begin with a signed genesis record")
	ErrCadence      = errors.New("a checkpoint is missing where the log's cadence requires one")
	ErrAfterClose   = errors.New("records follow the clean-shutdown checkpoint")
	ErrOpenTail     = errors.New("the log was not closed cleanly: records after its last signed record are not anchored")
	ErrInstance     = errors.New("the log belongs to another instance")
	ErrAnchor       = errors.New("the log does not reach the anchored head (truncated or replaced)")
)

// TamperError names the first bad record of a chain.
type TamperError struct {
	Where      string // file:line or stream:id
	Seq        uint64 // the record's sequence number, when readable
	DecisionID string // when the record is a readable decision
	Detail     string
	Err        error // one of the sentinel errors above
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
	// Torn marks the last line of a file that does not end in a newline:
	// a write interrupted by a crash (the writer cuts it off when it
	// takes the log up again).
	Torn bool
}

// Summary is what [Verify] found in an intact chain.
type Summary struct {
	Records          uint64 // every record, checkpoints included
	Decisions        uint64
	Reviews          uint64
	Drops            uint64 // decisions answered without a record (from drop records)
	Checkpoints      uint64
	Signed           uint64 // checkpoints whose signature was verified
	UnsignedTail     uint64 // records after the last signed record (checkpoint, genesis or restart)
	Head             Head
	LastCheckpointAt time.Time
	Genesis          *Opening // the signed genesis (with keys)
	Restarts         uint64   // restart records: writers that took up the log
	Closed           bool     // the last record is a clean-shutdown checkpoint
	Anchored         bool     // the anchor given was found in the chain
	TornTail         string   // where a torn last line (a write cut by a crash) was found
	// Pruned is the prune anchor the log started from, when its first
	// records were pruned.
	Pruned *PruneAnchor
}

// VerifyOptions are the checks of [VerifyWith] beyond the hash chain.
type VerifyOptions struct {
	// Keys are the public keys the log may be signed by. With none, only
	// the hash chain and the structure of checkpoints are checked (a log
	// rewritten with recomputed hashes passes). With keys, the log must
	// begin with a genesis signed by one of them, every checkpoint and
	// restart must be signed by one of them, the cadence the genesis (or
	// the latest restart) declares must hold, nothing but a restart may
	// follow a clean-shutdown checkpoint, and a log that was not closed
	// cleanly fails with [ErrOpenTail] unless AllowOpenTail.
	Keys []ed25519.PublicKey
	// AllowOpenTail accepts a log whose last record is not a
	// clean-shutdown checkpoint (a running server's log, or one whose
	// server crashed); the records after its last signed record are
	// counted in [Summary].UnsignedTail.
	AllowOpenTail bool
	// Instance, when set, must be the genesis's instance id.
	Instance string
	// Anchor, when set, is a head the log must reach: the record at
	// Anchor.Seq must exist and hash to Anchor.Hash ([ErrAnchor]).
	Anchor *Head
	// Pruned are the anchors old segments were pruned behind
	// ([ReadPruneAnchors]). A log whose first record is not the first
	// ever starts from the anchor that names the record before it; with
	// Keys it must be signed by one of them. Without such an anchor the
	// log fails as one whose first records were deleted ([ErrBrokenLink]).
	Pruned []PruneAnchor

	// observe, when set, sees the verifier's state before each record.
	observe func(next uint64, st verifyState)
}

// verifyState is what verification carries from one record to the next:
// what a prune anchor must restore to start at a later record.
type verifyState struct {
	head     Head
	genesis  *Opening
	cadence  *Opening
	since    uint64
	signedAt time.Time
	closed   bool
}

// Verify is [VerifyWith] with keys and no other option.
func Verify(entries iter.Seq2[Entry, error], keys ...ed25519.PublicKey) (Summary, error) {
	return VerifyWith(entries, VerifyOptions{Keys: keys})
}

// VerifyWith walks a chain from its first record: each line must match its
// own hash, link to the one before and carry the next sequence number; each
// checkpoint must sign the head before it; and with keys the rules of
// [VerifyOptions] hold. It returns a [*TamperError] naming the first bad
// record, or the error of reading the entries.
func VerifyWith(entries iter.Seq2[Entry, error], o VerifyOptions) (Summary, error) {
	keys := o.Keys
	byID := make(map[string]ed25519.PublicKey, len(keys))
	for _, k := range keys {
		byID[KeyID(k)] = k
		byID[legacyKeyID(k)] = k // logs written before the thumbprint ids
	}
	var (
		s        Summary
		head     = GenesisHead
		where    string
		cadence  *Opening // the latest verified opening
		since    uint64   // unsigned records since the last signed one
		signedAt time.Time
		closed   bool // the last record is a clean-shutdown checkpoint
		lastSeq  uint64
		lastID   string
	)
	for e, err := range entries {
		if err != nil {
			return s, err
		}
		where = e.Where
		r, hash, err := unseal(e.Line)
		if err != nil && e.Torn && s.TornTail == "" {
			s.TornTail = e.Where // only the last line of the log can be torn
			continue
		}
		if s.TornTail != "" {
			return s, &TamperError{Where: s.TornTail, Seq: head.Seq + 1, Err: ErrMalformed, Detail: "a torn line before the end of the log"}
		}
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
		if s.Records == 0 && head.Seq == 0 && r.Seq > 1 && (len(o.Pruned) > 0 || len(keys) > 0) {
			a, kind, detail := startAnchor(o.Pruned, r.Seq, byID, len(keys) > 0)
			if kind != nil {
				return s, bad(kind, "the log starts at seq %d: %s", r.Seq, detail)
			}
			if a != nil {
				if o.Instance != "" && a.Genesis != nil && a.Genesis.Instance != o.Instance {
					return s, bad(ErrInstance, "genesis of instance %q, want %q", a.Genesis.Instance, o.Instance)
				}
				head, s.Genesis, cadence, since, signedAt, closed = Head{Seq: a.Count, Hash: a.Head}, a.Genesis, a.Cadence, a.Since, a.SignedAt, a.Closed
				s.Pruned = a
			}
		}
		if o.observe != nil {
			o.observe(r.Seq, verifyState{head: head, genesis: s.Genesis, cadence: cadence, since: since, signedAt: signedAt, closed: closed})
		}
		if r.Seq != head.Seq+1 {
			return s, bad(ErrBrokenLink, "sequence %d follows %d", r.Seq, head.Seq)
		}
		if r.Prev != head.Hash {
			return s, bad(ErrBrokenLink, "prev %.12s… is not the hash of record %d (%.12s…)", r.Prev, head.Seq, head.Hash)
		}
		signed := false // r is a verified signed record
		if len(keys) > 0 {
			switch {
			case r.Seq == 1 && r.Kind != KindGenesis:
				return s, bad(ErrNoGenesis, "the first record is a %s record", r.Kind)
			case r.Seq > 1 && r.Kind == KindGenesis:
				return s, bad(ErrBrokenLink, "a second genesis")
			case closed && r.Kind != KindRestart && r.Kind != KindCheckpoint:
				return s, bad(ErrAfterClose, "a %s record after the clean shutdown at seq %d", r.Kind, head.Seq)
			}
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
		case KindGenesis, KindRestart:
			op := r.Opening
			if op == nil || op.Count != head.Seq || op.Head != head.Hash {
				return s, bad(ErrBrokenLink, "%s does not sign the head before it", r.Kind)
			}
			if len(keys) == 0 {
				break
			}
			k, ok := byID[op.KeyID]
			if !ok {
				return s, bad(ErrUnknownKey, "%s signed by key id %q", r.Kind, op.KeyID)
			}
			if !ed25519.Verify(k, openingMessage(r.Kind, op, r.Time), op.Sig) {
				return s, bad(ErrBadSignature, "%s, key id %q", r.Kind, op.KeyID)
			}
			if op.CheckpointEvery < 1 || op.CheckpointIntervalMs < 1 {
				return s, bad(ErrCadence, "%s declares no cadence", r.Kind)
			}
			if r.Kind == KindGenesis {
				if o.Instance != "" && op.Instance != o.Instance {
					return s, bad(ErrInstance, "genesis of instance %q, want %q", op.Instance, o.Instance)
				}
				s.Genesis = op
			} else {
				s.Restarts++
			}
			cadence, signed = op, true
		case KindCheckpoint:
			cp := r.Checkpoint
			if cp == nil || cp.Count != head.Seq || cp.Head != head.Hash {
				return s, bad(ErrBrokenLink, "checkpoint does not sign the head before it")
			}
			if !r.Time.Equal(cp.Time) {
				return s, bad(ErrBadSignature, "the checkpoint's record time is not the time it signs")
			}
			s.Checkpoints++
			if len(keys) > 0 {
				k, ok := byID[cp.KeyID]
				if !ok {
					return s, bad(ErrUnknownKey, "checkpoint signed by key id %q", cp.KeyID)
				}
				if !ed25519.Verify(k, checkpointMessage(cp.Count, cp.Head, cp.Time, cp.Closed), cp.Sig) {
					return s, bad(ErrBadSignature, "checkpoint, key id %q", cp.KeyID)
				}
				s.Signed++
				s.LastCheckpointAt = cp.Time
				signed = true
			}
		}
		if r.Kind == KindCheckpoint || r.Kind == KindGenesis || r.Kind == KindRestart {
			// A signed record is written by the log itself, byte for byte
			// what encoding/json makes of it: another spelling of the same
			// content (spaces, an unknown field) is an edit its signature
			// does not cover.
			if canon, err := json.Marshal(r); err != nil || !bytes.Equal(canon, sealedBody(e.Line)) {
				return s, bad(ErrHashMismatch, "a signed record not in its canonical form")
			}
		}
		if len(keys) > 0 && !signed && cadence != nil {
			// The writer's rule, checked with the same stored values: a
			// checkpoint comes before a record when CheckpointEvery
			// records already follow the last signed one, or when it is
			// not the first since and comes CheckpointInterval after it.
			if since >= uint64(cadence.CheckpointEvery) {
				return s, bad(ErrCadence, "%d records after the signed record at seq %d, at most %d allowed", since+1, r.Seq-since-1, cadence.CheckpointEvery)
			}
			if since > 0 && r.Time.Sub(signedAt) >= time.Duration(cadence.CheckpointIntervalMs)*time.Millisecond {
				return s, bad(ErrCadence, "%s after the signed record at seq %d, interval %dms", r.Time.Sub(signedAt), r.Seq-since-1, cadence.CheckpointIntervalMs)
			}
		}
		if signed {
			since, signedAt = 0, r.Time
		} else {
			since++
		}
		closed = r.Kind == KindCheckpoint && signed && r.Checkpoint.Closed
		if o.Anchor != nil && r.Seq == o.Anchor.Seq {
			if hash != o.Anchor.Hash {
				return s, bad(ErrAnchor, "the anchored head at seq %d hashes to %.12s…, this record to %.12s…", o.Anchor.Seq, o.Anchor.Hash, hash)
			}
			s.Anchored = true
		}
		s.Records++
		head = Head{Seq: r.Seq, Hash: hash}
		lastSeq, lastID = r.Seq, r.DecisionID
	}
	s.Head, s.UnsignedTail, s.Closed = head, since, closed
	if len(keys) > 0 && head.Seq == 0 {
		return s, &TamperError{Where: where + "(empty)", Err: ErrNoGenesis, Detail: "the log is empty"}
	}
	if o.Anchor != nil && !s.Anchored {
		return s, &TamperError{Where: where, Seq: lastSeq, DecisionID: lastID, Err: ErrAnchor,
			Detail: fmt.Sprintf("the log ends at seq %d, before the anchored head at seq %d", head.Seq, o.Anchor.Seq)}
	}
	if s.TornTail != "" && !o.AllowOpenTail {
		return s, &TamperError{Where: s.TornTail, Seq: head.Seq + 1, Err: ErrOpenTail,
			Detail: "the last line is torn (a write cut by a crash); --allow-open-tail accepts it"}
	}
	if len(keys) > 0 && !closed && !o.AllowOpenTail {
		te := &TamperError{Where: where, Seq: lastSeq, DecisionID: lastID, Err: ErrOpenTail}
		if since > 0 {
			te.Seq, te.DecisionID = head.Seq-since+1, ""
			te.Detail = fmt.Sprintf("%d records from seq %d on (the last record is at %s)", since, head.Seq-since+1, where)
		} else {
			te.Detail = "the log ends at a signed record without the clean-shutdown marker (a crash, or a cut at a checkpoint); --allow-open-tail accepts it, an anchor proves where it ends"
		}
		return s, te
	}
	return s, nil
}
