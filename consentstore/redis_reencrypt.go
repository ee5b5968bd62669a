package consentstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ReencryptProgress is how far [Redis.Reencrypt] got.
type ReencryptProgress struct {
	// Cursor resumes the walk where it stopped ("" starts it, and is what
	// a finished walk returns with Done).
	Cursor string `json:"cursor"`
	// Keys is the number of Redis keys looked at.
	Keys int `json:"keys"`
	// Consents, Grants and Agreements count the records rewritten under
	// the primary key.
	Consents   int `json:"consents"`
	Grants     int `json:"grants"`
	Agreements int `json:"agreements"`
	// Current counts the records already sealed under the primary key.
	Current int `json:"current"`
	// Changed counts records that changed between their read and their
	// rewrite (written meanwhile) and were left as they are: a writer with
	// the same key set sealed them under the primary already; run again to
	// catch the others.
	Changed int  `json:"changed"`
	Done    bool `json:"done"`
}

// casHashScript: KEYS hash; ARGV field, old, new. Replaces the field's
// value when it still is old.
var casHashScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`)

// casKeyScript: KEYS key; ARGV old, new. Replaces the value when it still
// is old, keeping the key's TTL.
var casKeyScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`)

// ErrNoKeySet means an operation that needs the store's key set was asked
// of a store without one.
var ErrNoKeySet = errors.New("the store has no encryption key set")

// Reencrypt rewrites every consent, break-glass grant and vendor agreement
// under the primary key of the store's key set: those sealed under another
// key of the set, or under none (clear text, which only this reads). It
// walks the keys with SCAN (on every master of a Cluster), from cursor
// ("" for the start), count keys a step, and calls progress after each
// step with the cursor to resume from; an error of progress stops the
// walk. A record sealed under a key the set does not hold stops it with
// [ErrSealed]: the set must hold every key still in use. Each rewrite is
// atomic and only replaces the value it read, so it is safe while
// servers run.
func (r *Redis) Reencrypt(ctx context.Context, cursor string, count int, progress func(ReencryptProgress) error) (ReencryptProgress, error) {
	var p ReencryptProgress
	if r.aead == nil {
		return p, ErrNoKeySet
	}
	if count <= 0 {
		count = 100
	}
	nodes, err := r.masters(ctx)
	if err != nil {
		return p, unavailable("reencrypt", err)
	}
	node, scan, err := parseCursor(cursor, len(nodes))
	if err != nil {
		return p, err
	}
	for ; node < len(nodes); node, scan = node+1, 0 {
		c := nodes[node]
		for {
			cctx, cancel := r.call(ctx)
			keys, next, err := c.Scan(cctx, scan, r.prefix+":*", int64(count)).Result()
			cancel()
			if err != nil {
				return p, unavailable("reencrypt", err)
			}
			for _, k := range keys {
				if err := r.reencryptKey(ctx, c, k, &p); err != nil {
					return p, err
				}
			}
			p.Keys += len(keys)
			scan = next
			if next == 0 {
				break
			}
			p.Cursor = strconv.Itoa(node) + ":" + strconv.FormatUint(next, 10)
			if err := progress(p); err != nil {
				return p, err
			}
		}
		p.Cursor = strconv.Itoa(node+1) + ":0"
		if node+1 < len(nodes) {
			if err := progress(p); err != nil {
				return p, err
			}
		}
	}
	p.Cursor, p.Done = "", true
	return p, progress(p)
}

func parseCursor(cursor string, nodes int) (int, uint64, error) {
	if cursor == "" {
		return 0, 0, nil
	}
	n, s, ok := strings.Cut(cursor, ":")
	node, err1 := strconv.Atoi(n)
	scan, err2 := strconv.ParseUint(s, 10, 64)
	if !ok || err1 != nil || err2 != nil || node < 0 || node > nodes {
		return 0, 0, fmt.Errorf("reencrypt cursor %q: want NODE:CURSOR from a previous run", cursor)
	}
	return node, scan, nil
}

// masters returns the clients to SCAN: the one client, or every master of
// a Cluster in address order (so a cursor names the same node again).
func (r *Redis) masters(ctx context.Context) ([]redis.UniversalClient, error) {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return []redis.UniversalClient{r.client}, nil
	}
	var (
		mu  sync.Mutex
		out []*redis.Client
	)
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		out = append(out, c)
		mu.Unlock()
		return nil
	})
	slices.SortFunc(out, func(a, b *redis.Client) int { return strings.Compare(a.Options().Addr, b.Options().Addr) })
	res := make([]redis.UniversalClient, len(out))
	for i, c := range out {
		res[i] = c
	}
	return res, err
}

// patientOfKey returns the patient of PREFIX:{PATIENT}:SUFFIX.
func (r *Redis) patientOfKey(key, suffix string) (string, bool) {
	rest, ok := strings.CutPrefix(key, r.prefix+":{")
	if !ok {
		return "", false
	}
	patient, ok := strings.CutSuffix(rest, "}:"+suffix)
	return patient, ok && patient != ""
}

func (r *Redis) reencryptKey(ctx context.Context, c redis.UniversalClient, key string, p *ReencryptProgress) error {
	if patient, ok := r.patientOfKey(key, "consents"); ok {
		return r.reencryptHash(ctx, c, key, p, &p.Consents, func(id, val string) (string, string, bool) {
			version, revoked, payload, ok := splitRecord(val)
			flag := "0"
			if revoked {
				flag = "1"
			}
			return version + "|" + flag + "|", payload, ok
		}, func(id string) []byte { return additional(patient, id) })
	}
	if patient, ok := r.patientOfKey(key, "grants"); ok {
		return r.reencryptHash(ctx, c, key, p, &p.Grants, func(id, val string) (string, string, bool) {
			exp, flag, payload, ok := cutFields(val)
			return exp + "|" + flag + "|", payload, ok
		}, func(id string) []byte { return grantAdditional(patient, id) })
	}
	if rest, ok := strings.CutPrefix(key, r.prefix+":agreement:{"); ok && strings.HasSuffix(rest, "}") {
		clientID := strings.TrimSuffix(rest, "}")
		cctx, cancel := r.call(ctx)
		defer cancel()
		val, err := c.Get(cctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return unavailable("reencrypt", err)
		}
		flag, nanos, payload, ok := cutFields(val)
		if !ok {
			return fmt.Errorf("agreement %q: malformed: %w", clientID, ErrUnavailable)
		}
		nv, changed, err := r.reseal(payload, agreementAdditional(clientID))
		if err != nil {
			return fmt.Errorf("agreement %q: %w", clientID, err)
		}
		if !changed {
			p.Current++
			return nil
		}
		n, err := casKeyScript.Run(cctx, c, []string{key}, val, flag+"|"+nanos+"|"+nv).Int()
		if err != nil {
			return unavailable("reencrypt", err)
		}
		if n == 1 {
			p.Agreements++
		} else {
			p.Changed++
		}
	}
	return nil
}

// reencryptHash rewrites the fields of one hash of records: split returns
// a record's head (what precedes its payload) and payload.
func (r *Redis) reencryptHash(ctx context.Context, c redis.UniversalClient, key string, p *ReencryptProgress, counter *int,
	split func(id, val string) (head, payload string, ok bool), aad func(id string) []byte) error {
	cctx, cancel := r.call(ctx)
	defer cancel()
	vals, err := c.HGetAll(cctx, key).Result()
	if err != nil {
		return unavailable("reencrypt", err)
	}
	ids := make([]string, 0, len(vals))
	for id := range vals {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		val := vals[id]
		head, payload, ok := split(id, val)
		if !ok {
			return fmt.Errorf("%s %q: malformed record: %w", key, id, ErrUnavailable)
		}
		nv, changed, err := r.reseal(payload, aad(id))
		if err != nil {
			return fmt.Errorf("%s %q: %w", key, id, err)
		}
		if !changed {
			p.Current++
			continue
		}
		n, err := casHashScript.Run(cctx, c, []string{key}, id, val, head+nv).Int()
		if err != nil {
			return unavailable("reencrypt", err)
		}
		if n == 1 {
			*counter++
		} else {
			p.Changed++
		}
	}
	return nil
}

// reseal opens a payload (clear text too) and seals it under the primary
// key; changed is false when it is sealed under the primary already.
func (r *Redis) reseal(payload string, aad []byte) (string, bool, error) {
	if r.aead.current([]byte(payload)) {
		return payload, false, nil
	}
	plain := []byte(payload)
	if isSealed([]byte(payload)) {
		var err error
		if plain, err = r.aead.open([]byte(payload), aad); err != nil {
			return "", false, err
		}
	}
	nv, err := r.aead.seal(plain, aad)
	return nv, err == nil, err
}
