package consentstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// PruneReport counts what [Memory.PruneRevoked] or [Redis.PruneRevoked]
// removed (or, in a dry run, would remove).
type PruneReport struct {
	// Consents and Agreements are revoked records whose revocation is
	// older than the cutoff; Grants are grants that expired before it.
	Consents   int `json:"consents"`
	Grants     int `json:"grants"`
	Agreements int `json:"agreements"`
	// Undated are revoked consents without a revocation time (revoked
	// before it was kept): they are kept, and dated now (not in a dry
	// run), so a later prune removes them once they are past retention
	// from now.
	Undated int `json:"undated"`
}

// revokedAtKey holds when each revoked consent of the patient was revoked
// (id → Unix milliseconds); it shares the patient's hash tag.
func (r *Redis) revokedAtKey(patient string) string { return r.prefix + ":{" + patient + "}:revokedAt" }

var (
	// KEYS consents, revoked, version; ARGV id, value, channel, message.
	// Removes the record when it still is value.
	pruneConsentScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`)
	// KEYS agreement; ARGV value, channel, message.
	pruneAgreementScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`)
)

// PruneRevoked removes the revoked consents and vendor agreements revoked
// before the cutoff (their history past retention), walking the keys with
// SCAN. Break-glass grants need nothing: Redis drops them once they have
// expired. A consent's id stays bound to its patient. A record written
// meanwhile is left alone. With dryRun it only counts.
func (r *Redis) PruneRevoked(ctx context.Context, before time.Time, dryRun bool) (PruneReport, error) {
	var rep PruneReport
	nodes, err := r.masters(ctx)
	if err != nil {
		return rep, unavailable("prune", err)
	}
	cut := before.UnixMilli()
	for _, c := range nodes {
		iter := c.Scan(ctx, 0, r.prefix+":*", 200).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			if patient, ok := r.patientOfKey(key, "consents"); ok {
				if err := r.pruneConsents(ctx, c, patient, cut, dryRun, &rep); err != nil {
					return rep, err
				}
				continue
			}
			if rest, ok := strings.CutPrefix(key, r.prefix+":agreement:{"); ok && strings.HasSuffix(rest, "}") {
				if err := r.pruneAgreement(ctx, c, key, strings.TrimSuffix(rest, "}"), before, dryRun, &rep); err != nil {
					return rep, err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return rep, unavailable("prune", err)
		}
	}
	return rep, nil
}

func (r *Redis) pruneConsents(ctx context.Context, c redis.UniversalClient, patient string, cut int64, dryRun bool, rep *PruneReport) error {
	cctx, cancel := r.call(ctx)
	defer cancel()
	var recs, times *redis.MapStringStringCmd
	if _, err := c.TxPipelined(cctx, func(p redis.Pipeliner) error {
		recs = p.HGetAll(cctx, r.consentsKey(patient))
		times = p.HGetAll(cctx, r.revokedAtKey(patient))
		return nil
	}); err != nil {
		return unavailable("prune", err)
	}
	for id, val := range recs.Val() {
		_, revoked, _, ok := splitRecord(val)
		if !ok {
			return fmt.Errorf("consent %q: malformed record in redis: %w", id, ErrUnavailable)
		}
		at, dated := times.Val()[id]
		switch {
		case !revoked:
			if dated && !dryRun { // revoked once, then put again
				_ = c.HDel(cctx, r.revokedAtKey(patient), id).Err()
			}
			continue
		case !dated:
			rep.Undated++
			if !dryRun {
				if err := c.HSetNX(cctx, r.revokedAtKey(patient), id, r.now().UnixMilli()).Err(); err != nil {
					return unavailable("prune", err)
				}
			}
			continue
		}
		ms, err := strconv.ParseInt(at, 10, 64)
		if err != nil || ms >= cut {
			continue
		}
		if dryRun {
			rep.Consents++
			continue
		}
		n, err := r.runScript(cctx, pruneConsentScript, []string{r.consentsKey(patient), r.revokedAtKey(patient), r.versionKey(patient)},
			id, val, r.channel, r.patientMsg(patient)).Int()
		if err != nil {
			return unavailable("prune", err)
		}
		rep.Consents += n
	}
	r.invalidatePatient(patient)
	return nil
}

func (r *Redis) pruneAgreement(ctx context.Context, c redis.UniversalClient, key, clientID string, before time.Time, dryRun bool, rep *PruneReport) error {
	cctx, cancel := r.call(ctx)
	defer cancel()
	val, err := c.Get(cctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return unavailable("prune", err)
	}
	flag, nanos, _, _ := cutFields(val)
	n, err := strconv.ParseInt(nanos, 10, 64)
	if err != nil {
		return fmt.Errorf("agreement %q: malformed record in redis: %w", clientID, ErrUnavailable)
	}
	if flag != "1" || !time.Unix(0, n).Before(before) {
		return nil
	}
	if dryRun {
		rep.Agreements++
		return nil
	}
	done, err := r.runScript(cctx, pruneAgreementScript, []string{key}, val, r.channel, r.agreementMsg(clientID)).Int()
	if err != nil {
		return unavailable("prune", err)
	}
	r.agreements.invalidate(clientID)
	rep.Agreements += done
	return nil
}
