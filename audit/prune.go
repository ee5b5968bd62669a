package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"time"
)

// Retention. [PruneFile] removes, or moves to an archive, whole rotated
// segments of a file log whose records are all older than a date. Before
// it removes a segment it appends to PATH.pruned a [PruneAnchor] for the
// record that ends it: the head of the chain at the cut and the state
// verification needs to go on from there (the signed genesis, the latest
// opening's cadence, the records since the last signed one), signed by the
// log's key. [VerifyWith] given these anchors ([VerifyOptions].Pruned,
// [ReadPruneAnchors]) starts a log whose first records are gone from the
// anchor naming the record before its first one: what remains verifies,
// an edit of what remains fails as before, and an anchor that is not
// signed by a key given fails. Each prune is recorded on the chain itself
// ([KindPrune], [Log.RecordPrune]).

// PruneAnchor is the signed statement left where segments were pruned:
// records 1..Count are gone, record Count hashed to Head, and the state of
// verification after it.
type PruneAnchor struct {
	Count  uint64    `json:"count"`
	Head   string    `json:"head"`
	Before time.Time `json:"before"`
	Time   time.Time `json:"time"`
	// Genesis is the log's signed genesis; Cadence the latest opening
	// (genesis or restart) at the cut; Since the unsigned records after
	// the last signed one and SignedAt its time; Closed whether record
	// Count is a clean-shutdown checkpoint.
	Genesis  *Opening  `json:"genesis,omitempty"`
	Cadence  *Opening  `json:"cadence,omitempty"`
	Since    uint64    `json:"since"`
	SignedAt time.Time `json:"signedAt,omitzero"`
	Closed   bool      `json:"closed,omitempty"`
	KeyID    string    `json:"keyId,omitempty"`
	Sig      []byte    `json:"sig,omitempty"`
}

// Prune is the record of a prune on the chain.
type Prune struct {
	Before time.Time `json:"before"`
	// Segments are the file names removed (or archived), oldest first.
	Segments []string `json:"segments"`
	// Count is the number of records gone (1..Count); Head the hash of
	// record Count.
	Count uint64 `json:"count"`
	Head  string `json:"head"`
	// Archive is where the segments went ("" when deleted).
	Archive string `json:"archive,omitempty"`
	// KeyID names the key that signed the anchor ("" unsigned).
	KeyID string `json:"keyId,omitempty"`
}

// pruneMessage is what a prune anchor's signature covers: its JSON without
// the signature.
func pruneMessage(a *PruneAnchor) []byte {
	c := *a
	c.Sig = nil
	b, _ := json.Marshal(&c) // a struct of plain fields: never fails
	return append([]byte("chaperone-audit-prune-v1\n"), b...)
}

func (s *Signer) signPrune(a *PruneAnchor) {
	a.KeyID = s.id
	a.Sig = ed25519.Sign(s.key, pruneMessage(a))
}

// startAnchor finds the anchor a log whose first record is first starts
// from; signed says whether its signature must verify with one of byID.
func startAnchor(anchors []PruneAnchor, first uint64, byID map[string]ed25519.PublicKey, signed bool) (*PruneAnchor, error, string) {
	for i := range anchors {
		a := &anchors[i]
		if a.Count+1 != first {
			continue
		}
		if !signed {
			return a, nil, ""
		}
		k, ok := byID[a.KeyID]
		if !ok {
			return nil, ErrUnknownKey, fmt.Sprintf("its prune anchor is signed by key id %q", a.KeyID)
		}
		if !ed25519.Verify(k, pruneMessage(a), a.Sig) {
			return nil, ErrBadSignature, "its prune anchor's signature does not verify"
		}
		return a, nil, ""
	}
	return nil, nil, "" // none: the log fails as one whose first records were deleted
}

// PruneAnchorsFile is where the prune anchors of the log at path are kept.
func PruneAnchorsFile(path string) string { return path + ".pruned" }

// ReadPruneAnchors reads the prune anchors of the log at path (none when it
// was never pruned).
func ReadPruneAnchors(path string) ([]PruneAnchor, error) {
	f, err := os.Open(PruneAnchorsFile(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prune anchors: %w", err)
	}
	defer f.Close()
	var out []PruneAnchor
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var a PruneAnchor
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("prune anchors %s:%d: %w: %v", PruneAnchorsFile(path), n, ErrMalformed, err)
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

func appendPruneAnchor(path string, a *PruneAnchor) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(PruneAnchorsFile(path), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("prune anchors: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("prune anchors: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// PruneOptions says what [PruneFile] removes and how it signs.
type PruneOptions struct {
	// Before: a segment goes when its last record is older.
	Before time.Time
	// Archive, when set, is a directory the segments are moved to
	// instead of deleted.
	Archive string
	// DryRun reports what would go and changes nothing.
	DryRun bool
	// Signer signs the anchors; without one they are unsigned, which
	// only a log without keys accepts. Keys are further public keys the
	// log may be signed by (rotated keys) for the verification that
	// precedes the prune.
	Signer *Signer
	Keys   []ed25519.PublicKey
	// Now is the clock of the anchors (default time.Now).
	Now func() time.Time
}

// PrunedSegment is one segment a prune removes.
type PrunedSegment struct {
	Path        string    `json:"path"`
	First, Last uint64    `json:"-"`
	Records     uint64    `json:"records"`
	LastTime    time.Time `json:"lastTime"`
}

// PruneResult is what [PruneFile] removed (or would remove).
type PruneResult struct {
	Segments []PrunedSegment `json:"segments"`
	// Record is what to record on the chain; Record.Count is 0 when
	// nothing went.
	Record Prune `json:"record"`
}

// ErrPruneNeedsKey means a signed log was to be pruned without its
// signing key: its anchors could not be signed.
var ErrPruneNeedsKey = errors.New("the audit log is signed: pruning it needs its signing key")

// signedLog reports whether the log at path is signed: it begins with a
// genesis, or was pruned behind signed anchors.
func signedLog(path string) (bool, error) {
	anchors, err := ReadPruneAnchors(path)
	if err != nil {
		return false, err
	}
	if len(anchors) > 0 {
		return anchors[len(anchors)-1].KeyID != "", nil
	}
	signed := false
	for e, err := range ReadFiles(path) {
		if err != nil {
			return false, err
		}
		var r struct {
			Kind Kind `json:"kind"`
		}
		_ = json.Unmarshal(e.Line, &r)
		signed = r.Kind == KindGenesis
		break
	}
	return signed, nil
}

// ErrPruneRefused means the log did not verify, so nothing was pruned:
// pruning must not destroy the evidence of tampering.
var ErrPruneRefused = errors.New("audit log does not verify: nothing pruned")

// PruneFile removes (or archives) the oldest rotated segments of the file
// log at path whose records are all older than o.Before. The newest
// segment and the log file itself are never pruned. It verifies the whole
// log first (with the signer's and o.Keys' public keys, accepting an open
// tail) and prunes nothing when it does not verify ([ErrPruneRefused]).
// For each segment, oldest first, it appends the anchor of the cut after
// it, then removes it, so a crash in between leaves a log that verifies.
func PruneFile(path string, o PruneOptions) (PruneResult, error) {
	var res PruneResult
	if o.Now == nil {
		o.Now = time.Now
	}
	segs, err := segments(path)
	if err != nil {
		return res, err
	}
	// Candidates: a prefix of the segments, never the newest.
	var cut []PrunedSegment
	for i := 0; i+1 < len(segs); i++ {
		first, last, lastTime, n, err := segmentSpan(segs[i])
		if err != nil {
			return res, err
		}
		if !lastTime.Before(o.Before) {
			break
		}
		cut = append(cut, PrunedSegment{Path: segs[i], First: first, Last: last, Records: n, LastTime: lastTime})
	}
	res.Segments = cut
	res.Record.Before, res.Record.Archive = o.Before.UTC(), o.Archive
	if len(cut) == 0 {
		return res, nil
	}
	if o.Signer == nil {
		if signed, err := signedLog(path); err != nil || signed {
			return res, errors.Join(err, ErrPruneNeedsKey)
		}
	}
	keys := o.Keys
	if o.Signer != nil {
		keys = append([]ed25519.PublicKey{o.Signer.Public()}, keys...)
	}
	anchors, err := ReadPruneAnchors(path)
	if err != nil {
		return res, err
	}
	states := map[uint64]verifyState{}
	ends := map[uint64]bool{}
	for _, c := range cut {
		ends[c.Last+1] = true
	}
	if _, err := VerifyWith(ReadFiles(path), VerifyOptions{Keys: keys, AllowOpenTail: true, Pruned: anchors,
		observe: func(next uint64, st verifyState) {
			if ends[next] {
				states[next] = st
			}
		}}); err != nil {
		return res, fmt.Errorf("%w: %w", ErrPruneRefused, err)
	}
	for _, c := range cut {
		if _, ok := states[c.Last+1]; !ok {
			return res, fmt.Errorf("%w: no record %d after segment %s", ErrPruneRefused, c.Last+1, c.Path)
		}
	}
	last := states[cut[len(cut)-1].Last+1]
	res.Record.Count, res.Record.Head = last.head.Seq, last.head.Hash
	if o.Signer != nil {
		res.Record.KeyID = o.Signer.KeyID()
	}
	for _, c := range cut {
		res.Record.Segments = append(res.Record.Segments, filepath.Base(c.Path))
	}
	if o.DryRun {
		return res, nil
	}
	if o.Archive != "" {
		if err := os.MkdirAll(o.Archive, 0o750); err != nil {
			return res, fmt.Errorf("audit archive: %w", err)
		}
	}
	now := o.Now().UTC()
	for i, c := range cut {
		st := states[c.Last+1]
		a := &PruneAnchor{Count: st.head.Seq, Head: st.head.Hash, Before: o.Before.UTC(), Time: now, Genesis: st.genesis,
			Cadence: st.cadence, Since: st.since, SignedAt: st.signedAt.UTC(), Closed: st.closed}
		if o.Signer != nil {
			o.Signer.signPrune(a)
		}
		if err := appendPruneAnchor(path, a); err != nil {
			return trimmed(res, i), err
		}
		if err := removeSegment(c.Path, o.Archive); err != nil {
			return trimmed(res, i), err
		}
	}
	return res, syncDir(filepath.Dir(path))
}

// trimmed is res after only its first n segments went.
func trimmed(res PruneResult, n int) PruneResult {
	res.Segments, res.Record.Segments = res.Segments[:n], res.Record.Segments[:n]
	if n == 0 {
		res.Record.Count, res.Record.Head = 0, ""
	} else {
		res.Record.Count = res.Segments[n-1].Last
		res.Record.Head = "" // the head of a partial prune is in its anchor
	}
	return res
}

// removeSegment deletes the segment, or moves it into archive (copying
// it when a rename cannot, across file systems).
func removeSegment(seg, archive string) error {
	if archive == "" {
		if err := os.Remove(seg); err != nil {
			return fmt.Errorf("prune %s: %w", seg, err)
		}
		return nil
	}
	dst := filepath.Join(archive, filepath.Base(seg))
	if err := os.Rename(seg, dst); err == nil {
		return syncDir(archive)
	}
	in, err := os.Open(seg)
	if err != nil {
		return fmt.Errorf("archive %s: %w", seg, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("archive %s: %w", seg, err)
	}
	_, cerr := io.Copy(out, in)
	serr := out.Sync()
	if err := errors.Join(cerr, serr, out.Close()); err != nil {
		return fmt.Errorf("archive %s: %w", seg, err)
	}
	if err := syncDir(archive); err != nil {
		return err
	}
	if err := os.Remove(seg); err != nil {
		return fmt.Errorf("prune %s: %w", seg, err)
	}
	return nil
}

// segmentSpan reads a segment's first and last sequence numbers, the time
// of its last record and its number of records, from its first and last
// lines.
func segmentSpan(path string) (first, last uint64, lastTime time.Time, n uint64, err error) {
	if first, err = firstSeq(path); err != nil {
		return 0, 0, time.Time{}, 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, time.Time{}, 0, err
	}
	line, _, err := lastLine(path, st.Size())
	if err != nil || line == nil {
		return 0, 0, time.Time{}, 0, fmt.Errorf("segment %s has no last record: %v", path, err)
	}
	var r struct {
		Seq  uint64    `json:"seq"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(line, &r); err != nil || r.Seq < first {
		return 0, 0, time.Time{}, 0, fmt.Errorf("segment %s: last record: %w: %v", path, ErrMalformed, err)
	}
	return first, r.Seq, r.Time, r.Seq - first + 1, nil
}

// RecordPrune records a prune made by caller on the chain and waits until
// it is stored (as [Log.Change] does).
func (l *Log) RecordPrune(ctx context.Context, caller string, p Prune) error {
	return l.store(ctx, &Record{Kind: KindPrune, Caller: caller, Prune: &p})
}
