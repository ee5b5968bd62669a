package consentstore

import (
	"context"
	"strconv"
	"time"
)

// PruneRevoked removes the consents revoked before the cutoff (their
// history past retention); with dryRun it only counts them. Consents
// revoked before the store kept revocation times do not exist in memory.
func (m *Memory) PruneRevoked(ctx context.Context, before time.Time, dryRun bool) (PruneReport, error) {
	var rep PruneReport
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	patients := map[string]bool{}
	for id, at := range m.revoked {
		rec, ok := m.records[id]
		if !ok || !rec.Revoked || !at.Before(before) {
			continue
		}
		rep.Consents++
		if dryRun {
			continue
		}
		delete(m.records, id)
		delete(m.revoked, id)
		patients[rec.Consent.Patient] = true
	}
	for p := range patients {
		m.seq++
		m.rebuild(p, strconv.FormatUint(m.seq, 10))
	}
	return rep, nil
}
