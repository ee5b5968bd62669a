package consentstore

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryRelationships is an in-memory [Relationships] store, for a server
// without Redis and for tests. It is safe for concurrent use.
type MemoryRelationships struct {
	mu        sync.RWMutex
	byID      map[string]Relationship
	byPatient map[string]map[string]bool // patient → ids
	now       func() time.Time
}

var _ Relationships = (*MemoryRelationships)(nil)

// NewMemoryRelationships returns an empty store; now stamps UpdatedAt
// (nil: time.Now).
func NewMemoryRelationships(now func() time.Time) *MemoryRelationships {
	if now == nil {
		now = time.Now
	}
	return &MemoryRelationships{byID: map[string]Relationship{}, byPatient: map[string]map[string]bool{}, now: now}
}

// PutRelationship implements [Relationships].
func (m *MemoryRelationships) PutRelationship(ctx context.Context, r Relationship) (Relationship, error) {
	if err := ctx.Err(); err != nil {
		return Relationship{}, err
	}
	r, err := r.Normalize()
	if err != nil {
		return Relationship{}, err
	}
	r.UpdatedAt = m.now().UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.byID[r.ID]; ok {
		m.unindex(old)
	}
	m.byID[r.ID] = r
	if m.byPatient[r.Patient] == nil {
		m.byPatient[r.Patient] = map[string]bool{}
	}
	m.byPatient[r.Patient][r.ID] = true
	return r, nil
}

// DeleteRelationship implements [Relationships].
func (m *MemoryRelationships) DeleteRelationship(ctx context.Context, id string) (Relationship, error) {
	if err := ctx.Err(); err != nil {
		return Relationship{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	if !ok {
		return Relationship{}, ErrRelationshipNotFound
	}
	delete(m.byID, id)
	m.unindex(r)
	return r, nil
}

func (m *MemoryRelationships) unindex(r Relationship) {
	delete(m.byPatient[r.Patient], r.ID)
	if len(m.byPatient[r.Patient]) == 0 {
		delete(m.byPatient, r.Patient)
	}
}

func (m *MemoryRelationships) list(ctx context.Context, keep func(Relationship) bool) ([]Relationship, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Relationship
	for _, r := range m.byID {
		if keep(r) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Relationship) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// PatientRelationships implements [Relationships].
func (m *MemoryRelationships) PatientRelationships(ctx context.Context, patient string) ([]Relationship, error) {
	return m.list(ctx, func(r Relationship) bool { return r.Patient == patient })
}

// PractitionerRelationships implements [Relationships].
func (m *MemoryRelationships) PractitionerRelationships(ctx context.Context, practitioner string) ([]Relationship, error) {
	return m.list(ctx, func(r Relationship) bool { return r.Practitioner == practitioner })
}

// ActiveRelationship implements [Relationships].
func (m *MemoryRelationships) ActiveRelationship(ctx context.Context, practitioner, patient string, at time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if practitioner == "" || patient == "" {
		return false, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for id := range m.byPatient[patient] {
		if r := m.byID[id]; r.Practitioner == practitioner && r.ActiveAt(at) {
			return true, nil
		}
	}
	return false, nil
}
