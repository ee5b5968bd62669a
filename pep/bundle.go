package pep

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json/jsontext"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Decider decides the resources of a batch of Bundle entries or NDJSON
// lines, in the resource phase (typically one BatchCheck). It returns one
// response per resource, in the same order. An entry is released only on a
// DECISION_ALLOW response, with that response's obligations applied by
// [Apply]; a nil response, any other decision, an error or a wrong count
// withholds (an error or a wrong count fails the whole call).
type Decider func(resources []json.RawMessage) ([]*chaperonev1.CheckResponse, error)

// Defaults of the Bundle and NDJSON variants.
const (
	DefaultMaxBytes  = 64 << 20
	DefaultBatchSize = 1000 // the most one BatchCheck takes
)

// Option configures [ApplyBundle], [ApplyBundleStream] and [ApplyNDJSON].
type Option func(*config)

type config struct {
	maxBytes  int64
	batchSize int
}

// WithMaxBytes sets the largest input accepted: the whole Bundle, or one
// NDJSON line (default [DefaultMaxBytes]). Larger input fails with
// [ErrTooLarge].
func WithMaxBytes(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBytes = n
		}
	}
}

// WithBatchSize sets how many entry resources go to one call of the
// [Decider] (default [DefaultBatchSize]); memory beyond the output is one
// batch of entries.
func WithBatchSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.batchSize = n
		}
	}
}

func newConfig(opts []Option) config {
	c := config{maxBytes: DefaultMaxBytes, batchSize: DefaultBatchSize}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// ApplyBundle filters a Bundle (searchset, history, batch-response,
// transaction-response, collection) held in memory: see [ApplyBundleStream].
func ApplyBundle(bundle []byte, decide Decider, opts ...Option) (out []byte, withheld int, err error) {
	var buf bytes.Buffer
	buf.Grow(len(bundle))
	withheld, err = ApplyBundleStream(&buf, bytes.NewReader(bundle), decide, opts...)
	if err != nil {
		return nil, withheld, err
	}
	return buf.Bytes(), withheld, nil
}

// ApplyBundleStream reads a Bundle from r and writes to w the Bundle to
// release: entries whose resource was denied or withheld are removed, every
// other entry resource has its own obligations applied, Bundle.total is
// removed when any entry was withheld and Bundle.signature when any entry
// was withheld or masked (each, when kept, is written after entry). Entries without a resource (a deleted version in a history) and
// OperationOutcome entries pass as they are; an entry resource that is
// itself a Bundle is filtered the same way, entry by entry. Other members
// pass in their input order.
//
// Entries are decided in batches of the batch size, so memory beyond w is
// one batch of entries. An error (invalid JSON, too large, a failed
// decide) leaves w with a truncated document that must not be sent: write
// to a buffer, or abort the response.
func ApplyBundleStream(w io.Writer, r io.Reader, decide Decider, opts ...Option) (withheld int, err error) {
	c := newConfig(opts)
	f := &filter{c: c, decide: decide}
	bw := bufio.NewWriter(w)
	if err := f.bundle(bw, &limitReader{r: r, left: c.maxBytes}); err != nil {
		return f.withheld, err
	}
	return f.withheld, bw.Flush()
}

// ApplyNDJSON reads newline-delimited FHIR resources (bulk data) from r
// and writes to w the lines to release, each enforced as by [Apply] with
// the obligations the [Decider] returned for it. Blank lines are dropped.
// Memory is one batch of lines; a line over the size limit fails with
// [ErrTooLarge].
func ApplyNDJSON(w io.Writer, r io.Reader, decide Decider, opts ...Option) (withheld int, err error) {
	c := newConfig(opts)
	f := &filter{c: c, decide: decide}
	br := bufio.NewReader(r)
	bw := bufio.NewWriter(w)
	var batch []*node
	flush := func() error {
		outs, err := f.decideAll(batch)
		if err != nil {
			return err
		}
		for _, o := range outs {
			if o == nil {
				continue
			}
			f.scratch = append(appendJSON(f.scratch[:0], o), '\n')
			bw.Write(f.scratch)
		}
		batch = batch[:0]
		return nil
	}
	for {
		line, err := readLine(br, c.maxBytes)
		if len(bytes.TrimSpace(line)) > 0 {
			n, perr := parseResource(line, 1)
			if perr != nil {
				return f.withheld, fmt.Errorf("ndjson line: %w", perr)
			}
			batch = append(batch, n)
			if len(batch) == c.batchSize {
				if err := flush(); err != nil {
					return f.withheld, err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return f.withheld, err
		}
	}
	if err := flush(); err != nil {
		return f.withheld, err
	}
	return f.withheld, bw.Flush()
}

// readLine reads one line of at most max bytes, without its newline.
func readLine(br *bufio.Reader, max int64) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if int64(len(line)+len(chunk)) > max+1 {
			return nil, fmt.Errorf("ndjson line over %d bytes: %w", max, ErrTooLarge)
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(line, []byte("\n")), err
	}
}

// filter carries the state of one Bundle or NDJSON run.
type filter struct {
	c        config
	decide   Decider
	withheld int
	changed  bool   // an entry was withheld or masked
	scratch  []byte // one entry's output
}

// bundle streams one Bundle object from r to w.
func (f *filter) bundle(w *bufio.Writer, r io.Reader) error {
	// The decoder only finds where values end; the package's scanner
	// checks each one (member names once, not twice).
	dec := jsontext.NewDecoder(r, jsontext.AllowDuplicateNames(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		if err != nil {
			return wrapJSON(err)
		}
		return ErrNotBundle
	}
	w.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			w.WriteByte(',')
		}
		first = false
	}
	// total and signature are held until the entries are done: total is
	// dropped when an entry was withheld (it would tell how many), the
	// signature when anything changed (it no longer signs what is sent).
	var total, signature jsontext.Value
	sawType, entryDone := false, false
	writeHeld := func() {
		if total != nil && f.withheld == 0 {
			sep()
			w.Write(appendName(nil, "total"))
			w.Write(total)
		}
		if signature != nil && !f.changed {
			sep()
			w.Write(appendName(nil, "signature"))
			w.Write(signature)
		}
		total, signature = nil, nil
	}
	seen := map[string]bool{}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return wrapJSON(err)
		}
		name := tok.String()
		if seen[name] {
			return fmt.Errorf("%w: Bundle member %q twice", ErrInvalidJSON, name)
		}
		seen[name] = true
		switch name {
		case "entry":
			if err := f.entries(w, dec, sep); err != nil {
				return err
			}
			entryDone = true
			writeHeld()
		case "total", "signature":
			v, err := readChecked(dec)
			if err != nil {
				return err
			}
			if name == "total" {
				total = v.Clone()
			} else {
				signature = v.Clone()
			}
			if entryDone {
				writeHeld()
			}
		default:
			v, err := readChecked(dec)
			if err != nil {
				return err
			}
			if name == "resourceType" {
				if (&node{kind: kindScalar, raw: v}).isString("Bundle") {
					sawType = true
				} else {
					return ErrNotBundle
				}
			}
			sep()
			w.Write(appendName(nil, name))
			w.Write(v)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return wrapJSON(err)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the Bundle", ErrInvalidJSON)
	}
	if !sawType {
		return ErrNotBundle
	}
	writeHeld()
	w.WriteByte('}')
	return nil
}

// readChecked reads the next value, held to the scanner's rules.
func readChecked(dec *jsontext.Decoder) (jsontext.Value, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return nil, wrapJSON(err)
	}
	if _, err := parse(v); err != nil {
		return nil, err
	}
	return v, nil
}

// entries streams the entry array, one batch at a time. The member name is
// written with the first released entry, so a Bundle whose entries are all
// withheld has no entry member (FHIR allows no empty arrays).
func (f *filter) entries(w *bufio.Writer, dec *jsontext.Decoder, sep func()) error {
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		if err != nil {
			return wrapJSON(err)
		}
		return fmt.Errorf("%w: entry is not an array", ErrNotBundle)
	}
	opened := false
	var batch []*node
	flush := func() error {
		kept, err := f.entryBatch(batch)
		if err != nil {
			return err
		}
		for _, e := range kept {
			if !opened {
				sep()
				w.Write(appendName(nil, "entry"))
				w.WriteByte('[')
				opened = true
			} else {
				w.WriteByte(',')
			}
			f.scratch = appendJSON(f.scratch[:0], e)
			w.Write(f.scratch)
		}
		batch = batch[:0]
		return nil
	}
	for dec.PeekKind() != ']' {
		if dec.PeekKind() == 0 {
			_, err := dec.ReadToken()
			return wrapJSON(err)
		}
		v, err := dec.ReadValue()
		if err != nil {
			return wrapJSON(err)
		}
		// The entry and its resource object; what the resource holds is
		// built only when obligations need it.
		n, err := parseLevels(bytes.Clone(v), 2)
		if err != nil {
			return err
		}
		if n.kind != kindObject {
			return fmt.Errorf("%w: an entry is not an object", ErrNotBundle)
		}
		batch = append(batch, n)
		if len(batch) == f.c.batchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return wrapJSON(err)
	}
	if err := flush(); err != nil {
		return err
	}
	if opened {
		w.WriteByte(']')
	}
	return nil
}

// entryBatch decides and enforces a batch of entries and returns those to
// release.
func (f *filter) entryBatch(batch []*node) ([]*node, error) {
	var res []*node
	var at []int
	for i, e := range batch {
		r := e.get("resource")
		if r == nil {
			continue
		}
		typ, ok := r.get("resourceType").str()
		if r.kind != kindObject || !ok {
			return nil, fmt.Errorf("entry resource: %w", ErrNotResource)
		}
		switch typ {
		case "OperationOutcome":
			continue
		case "Bundle":
			var buf bytes.Buffer
			sub := &filter{c: f.c, decide: f.decide}
			bw := bufio.NewWriter(&buf)
			err := sub.bundle(bw, bytes.NewReader(r.raw))
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				return nil, fmt.Errorf("entry bundle: %w", err)
			}
			f.withheld += sub.withheld
			f.changed = f.changed || sub.changed
			replace(e, "resource", &node{kind: kindRaw, raw: buf.Bytes()})
			continue
		}
		res = append(res, r)
		at = append(at, i)
	}
	outs, err := f.decideAll(res)
	if err != nil {
		return nil, err
	}
	drop := make(map[int]bool)
	for j, o := range outs {
		if o == nil {
			drop[at[j]] = true
			continue
		}
		replace(batch[at[j]], "resource", o)
	}
	kept := batch[:0]
	for i, e := range batch {
		if !drop[i] {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

// decideAll decides resources with one call of the Decider and enforces
// each answer; a nil result is a resource withheld.
func (f *filter) decideAll(res []*node) ([]*node, error) {
	if len(res) == 0 {
		return nil, nil
	}
	raws := make([]json.RawMessage, len(res))
	for i, r := range res {
		raws[i] = r.raw
	}
	resps, err := f.decide(raws)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecide, err)
	}
	if len(resps) != len(res) {
		return nil, fmt.Errorf("%w: %d decisions for %d resources", ErrDecide, len(resps), len(res))
	}
	out := make([]*node, len(res))
	for i, resp := range resps {
		if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
			f.withheld++
			f.changed = true
			continue
		}
		p := compile(resp.GetObligations())
		full := res[i]
		if !p.empty() {
			var err error
			if full, err = parse(res[i].raw); err != nil {
				return nil, err // checked once already: not reached
			}
		}
		changed, ok := p.apply(full)
		if !ok {
			f.withheld++
			f.changed = true
			continue
		}
		f.changed = f.changed || changed
		out[i] = full
		if !changed {
			out[i] = &node{kind: kindRaw, raw: res[i].raw}
		}
	}
	return out, nil
}

// replace sets the value of obj's member name.
func replace(obj *node, name string, v *node) {
	for i := range obj.mems {
		if obj.mems[i].is(name) {
			obj.mems[i].val = v
			return
		}
	}
}

// isString reports whether n is the JSON string s.
func (n *node) isString(s string) bool {
	v, ok := n.str()
	return ok && v == s
}

// limitReader fails with ErrTooLarge after left bytes.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
