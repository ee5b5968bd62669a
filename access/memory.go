package access

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"
)

// Memory keeps grants, agreements and the token revocation list in
// memory. It is safe for concurrent use.
type Memory struct {
	mu          sync.RWMutex
	grants      map[string]Grant // by id
	agreements  map[string]Agreement
	revocations map[revocationKey]Revocation
	now         func() time.Time
}

var (
	_ Grants      = (*Memory)(nil)
	_ Agreements  = (*Memory)(nil)
	_ Revocations = (*Memory)(nil)
)

// MemoryOption configures a [Memory] store.
type MemoryOption func(*Memory)

// WithMemoryClock sets the clock of expiries (tests); nil keeps time.Now.
func WithMemoryClock(now func() time.Time) MemoryOption {
	return func(m *Memory) {
		if now != nil {
			m.now = now
		}
	}
}

// NewMemory returns an empty store.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{grants: map[string]Grant{}, agreements: map[string]Agreement{}, revocations: map[revocationKey]Revocation{}, now: time.Now}
	for _, o := range opts {
		o(m)
	}
	return m
}

// NewID returns a random grant id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "bg-" + hex.EncodeToString(b[:])
}

// PutGrant stores g, giving it an id when it has none. Expired grants are
// dropped as new ones arrive.
func (m *Memory) PutGrant(_ context.Context, g Grant) (Grant, error) {
	if g.ID == "" {
		g.ID = NewID()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for id, old := range m.grants {
		if !now.Before(old.ExpiresAt) {
			delete(m.grants, id)
		}
	}
	m.grants[g.ID] = g
	return g, nil
}

// RevokeGrant ends a grant at once.
func (m *Memory) RevokeGrant(_ context.Context, id string) (Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[id]
	if !ok {
		return Grant{}, ErrNotFound
	}
	g.Revoked = true
	m.grants[id] = g
	return g, nil
}

// ListGrants returns the grants of subject and/or patient (empty matches
// any), oldest first.
func (m *Memory) ListGrants(_ context.Context, subject, patient string) ([]Grant, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Grant
	for _, g := range m.grants {
		if (subject == "" || g.Subject == subject) && (patient == "" || g.Patient == patient) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// ActiveGrant returns a grant of subject for patient that is active at t.
func (m *Memory) ActiveGrant(_ context.Context, subject, patient string, at time.Time) (Grant, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, g := range m.grants {
		if g.Subject == subject && g.Patient == patient && g.ActiveAt(at) {
			return g, true, nil
		}
	}
	return Grant{}, false, nil
}

// PutAgreement stores a, replacing the agreement of the same client.
func (m *Memory) PutAgreement(_ context.Context, a Agreement) (Agreement, error) {
	if err := a.Validate(); err != nil {
		return Agreement{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a.UpdatedAt = m.now()
	m.agreements[a.ClientID] = a
	return a, nil
}

// GetAgreement returns the agreement of a client.
func (m *Memory) GetAgreement(_ context.Context, clientID string) (Agreement, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a, ok := m.agreements[clientID]
	if !ok {
		return Agreement{}, ErrNotFound
	}
	return a, nil
}

// RevokeAgreement ends a client's agreement; it stays readable as revoked.
func (m *Memory) RevokeAgreement(_ context.Context, clientID string) (Agreement, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.agreements[clientID]
	if !ok {
		return Agreement{}, ErrNotFound
	}
	a.Revoked = true
	a.UpdatedAt = m.now()
	m.agreements[clientID] = a
	return a, nil
}

// RevokeToken implements [Revocations]. Entries past their expiry
// ([Revocation.Expires]) are swept as new ones arrive.
func (m *Memory) RevokeToken(_ context.Context, r Revocation) (Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for k, old := range m.revocations {
		if !now.Before(old.Expires()) {
			delete(m.revocations, k)
		}
	}
	k := revocationKey{r.TokenSHA256 != "" && r.JTI == "", r.JTI}
	if k.hash {
		k.v = r.TokenSHA256
	}
	if old, ok := m.revocations[k]; ok && old.Until.After(r.Until) {
		r.Until = old.Until
	}
	m.revocations[k] = r
	return r, nil
}

// revocationKey is a jti, or a token hash: the two never collide, and
// looking one up builds no string.
type revocationKey struct {
	hash bool
	v    string
}

// TokenRevoked implements [Revocations]; an entry past its expiry is not
// on the list.
func (m *Memory) TokenRevoked(_ context.Context, jti, tokenSHA256 string) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := m.now()
	if jti != "" {
		if r, ok := m.revocations[revocationKey{false, jti}]; ok && now.Before(r.Expires()) {
			return true, nil
		}
	}
	if tokenSHA256 != "" {
		if r, ok := m.revocations[revocationKey{true, tokenSHA256}]; ok && now.Before(r.Expires()) {
			return true, nil
		}
	}
	return false, nil
}

// RevocationCount is the number of entries held, swept or not (tests).
func (m *Memory) RevocationCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.revocations)
}
