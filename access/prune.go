package access

import (
	"context"
	"time"
)

// PruneRevoked removes the grants that expired before the cutoff (revoked
// or not: their history is past retention) and the agreements revoked
// before it; with dryRun it only counts them.
func (m *Memory) PruneRevoked(ctx context.Context, before time.Time, dryRun bool) (grants, agreements int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, g := range m.grants {
		if g.ExpiresAt.Before(before) {
			grants++
			if !dryRun {
				delete(m.grants, id)
			}
		}
	}
	for id, a := range m.agreements {
		if a.Revoked && a.UpdatedAt.Before(before) {
			agreements++
			if !dryRun {
				delete(m.agreements, id)
			}
		}
	}
	return grants, agreements, nil
}
