package consentstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

var _ Store = (*Memory)(nil)

// Memory is an in-memory [Store], safe for concurrent use. Reads of a
// patient's consents ([Memory.ForPatient]) do not allocate: each write
// rebuilds the patient's immutable [Set].
type Memory struct {
	limits Limits
	now    func() time.Time

	mu       sync.RWMutex
	seq      uint64
	records  map[string]Record
	patients map[string]*Set
	revoked  map[string]time.Time // when each revoked record was revoked (for PruneRevoked)
}

// MemoryOption configures a [Memory].
type MemoryOption func(*Memory)

// WithMemoryLimits sets what Put accepts (default: [Limits] defaults).
func WithMemoryLimits(l Limits) MemoryOption {
	return func(m *Memory) { m.limits = l.withDefaults() }
}

// WithMemoryClock sets the clock that consent dates are checked against
// (default time.Now).
func WithMemoryClock(now func() time.Time) MemoryOption {
	return func(m *Memory) {
		if now != nil {
			m.now = now
		}
	}
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{limits: Limits{}.withDefaults(), now: time.Now,
		records: make(map[string]Record), patients: make(map[string]*Set)}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Put implements [Store].
func (m *Memory) Put(ctx context.Context, c *fhirconsent.Consent, opts ...PutOption) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	o := putOpts(opts)
	if err := m.limits.check(c, m.now()); err != nil {
		return Record{}, fmt.Errorf("put consent: %w", err)
	}
	id := c.ID
	if id == "" {
		var err error
		if id, err = newID(); err != nil {
			return Record{}, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, had := m.records[id]
	switch {
	case had && old.Consent.Patient != c.Patient:
		return Record{}, fmt.Errorf("put consent %q: %w", id, ErrOtherPatient)
	case o.ifVersion != "" && (!had || old.Version != o.ifVersion):
		return Record{}, fmt.Errorf("put consent %q: %w", id, ErrVersionMismatch)
	case !had && m.limits.MaxPerPatient > 0 && m.count(c.Patient) >= m.limits.MaxPerPatient:
		return Record{}, fmt.Errorf("put consent %q: %w: patient has %d consents", id, ErrLimit, m.limits.MaxPerPatient)
	}
	m.seq++
	v := strconv.FormatUint(m.seq, 10)
	rec := Record{Consent: c.WithID(id, v), Version: v}
	m.records[id] = rec
	delete(m.revoked, id)
	m.rebuild(c.Patient, v)
	return rec, nil
}

// count is how many records the patient has. Callers hold mu.
func (m *Memory) count(patient string) int {
	n := 0
	for _, r := range m.records {
		if r.Consent.Patient == patient {
			n++
		}
	}
	return n
}

// Get implements [Store].
func (m *Memory) Get(ctx context.Context, id string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	rec, ok := m.records[id]
	if !ok {
		return Record{}, fmt.Errorf("get %q: %w", id, ErrNotFound)
	}
	return rec, nil
}

// List implements [Store].
func (m *Memory) List(ctx context.Context, patient string) ([]Record, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	patient = fhirconsent.CanonicalReference(patient)
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Record
	for _, r := range m.records {
		if r.Consent.Patient == patient {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Consent.ID, b.Consent.ID) })
	return out, m.patientVersion(patient), nil
}

// Revoke implements [Store].
func (m *Memory) Revoke(ctx context.Context, id string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[id]
	if !ok {
		return Record{}, fmt.Errorf("revoke %q: %w", id, ErrNotFound)
	}
	if !rec.Revoked {
		if m.revoked == nil {
			m.revoked = map[string]time.Time{}
		}
		m.revoked[id] = m.now()
	}
	m.seq++
	v := strconv.FormatUint(m.seq, 10)
	rec = Record{Consent: rec.Consent.WithID(id, v), Version: v, Revoked: true}
	m.records[id] = rec
	m.rebuild(rec.Consent.Patient, v)
	return rec, nil
}

// ForPatient implements [Store].
func (m *Memory) ForPatient(ctx context.Context, patient string) (Set, error) {
	if err := ctx.Err(); err != nil {
		return Set{}, err
	}
	m.mu.RLock()
	s := m.patients[patient]
	m.mu.RUnlock()
	if s == nil {
		// Callers may pass a patient reference in another spelling.
		if c := fhirconsent.CanonicalReference(patient); c != patient {
			return m.ForPatient(ctx, c)
		}
		return Set{Version: "0"}, nil
	}
	return *s, nil
}

// patientVersion is the patient's version ("0" before any write). Callers hold mu.
func (m *Memory) patientVersion(patient string) string {
	if s := m.patients[patient]; s != nil {
		return s.Version
	}
	return "0"
}

// rebuild recomputes the patient's Set at version v. Callers hold mu.
func (m *Memory) rebuild(patient, v string) {
	var cs []*fhirconsent.Consent
	for _, r := range m.records {
		if r.Consent.Patient == patient && !r.Revoked {
			cs = append(cs, r.Consent)
		}
	}
	slices.SortFunc(cs, func(a, b *fhirconsent.Consent) int { return strings.Compare(a.ID, b.ID) })
	m.patients[patient] = &Set{Consents: cs, Version: v}
}

// Load seeds the store from path: a file, or every *.json and *.ndjson file
// under a directory. Files may hold single Consent resources, FHIR Bundles
// or NDJSON. It returns how many consents were stored. A bad file stops the
// load with an error naming it (a [*ParseError] stays reachable with errors.As).
func (m *Memory) Load(ctx context.Context, path string) (int, error) {
	files, err := ConsentFiles(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return n, fmt.Errorf("load consents: %w", err)
		}
		cs, err := fhirconsent.ParseMany(data)
		if err != nil {
			return n, fmt.Errorf("load consents from %s: %w", f, err)
		}
		for _, c := range cs {
			if _, err := m.Put(ctx, c); err != nil {
				return n, fmt.Errorf("load consents from %s: %w", f, err)
			}
			n++
		}
	}
	return n, nil
}

// ConsentFiles lists the files Load reads for path: path itself when it is
// a file, else the *.json and *.ndjson files under it in lexical order.
func ConsentFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("consent files: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".ndjson")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consent files: %w", err)
	}
	return files, nil
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate consent id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
