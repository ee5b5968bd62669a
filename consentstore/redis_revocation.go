package consentstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"
)

// The token revocation list: one key per revoked token,
// PREFIX:revoked:j:{jti} or PREFIX:revoked:h:{sha256 hex}
// ("UNTIL_MS|JSON"), which Redis expires on its own at Until plus
// [access.RevocationGrace] (PXAT). A revocation publishes "t:KEY" on the
// invalidation channel; every replica drops that key from its local cache,
// so the next lookup reads Redis again. Lookups are cached like
// agreements, the absence of an entry too: on a warm cache a token's check
// costs no round trip.

var _ access.Revocations = (*Redis)(nil)

// KEYS revoked; ARGV value, expires ms, until ms, channel, message. Keeps
// an entry with a later until (returning it), else sets and publishes.
var revokeTokenScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local u = tonumber(string.match(cur, '^(%d+)|'))
  if u ~= nil and u > tonumber(ARGV[3]) then return cur end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return ARGV[1]`)

type revocationDoc struct {
	JTI         string    `json:"jti,omitempty"`
	TokenSHA256 string    `json:"tokenSha256,omitempty"`
	Until       time.Time `json:"until"`
	RevokedBy   string    `json:"revokedBy,omitempty"`
	RevokedAt   time.Time `json:"revokedAt"`
}

// revocationEntry caches one key of the list: revoked until expires (the
// entry's own expiry, zero when the key is not on the list), read at
// cached.
type revocationEntry struct {
	revokedUntil time.Time // zero: not on the list
	cachedUntil  time.Time
}

func (e *revocationEntry) expiry() time.Time { return e.cachedUntil }

func (r *Redis) revokedKey(key string) string { return r.prefix + ":revoked:" + key }

// RevokeToken implements [access.Revocations]: the entry is stored with a
// key TTL ending at rv.Expires() and every replica's cache of it is
// dropped. An entry already there with a later Until is kept.
func (r *Redis) RevokeToken(ctx context.Context, rv access.Revocation) (access.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return access.Revocation{}, err
	}
	if rv.JTI == "" && rv.TokenSHA256 == "" {
		return access.Revocation{}, &access.InvalidError{Field: "jti", Message: "is required"}
	}
	if !rv.Expires().After(r.now()) {
		return access.Revocation{}, &access.InvalidError{Field: "until", Message: "is in the past"}
	}
	doc, err := json.Marshal(revocationDoc{rv.JTI, rv.TokenSHA256, rv.Until.UTC(), rv.RevokedBy, rv.RevokedAt.UTC()})
	if err != nil {
		return access.Revocation{}, fmt.Errorf("revoke token: %w", err)
	}
	key := rv.Key()
	val := strconv.FormatInt(rv.Until.UnixMilli(), 10) + "|" + string(doc)
	ctx, cancel := r.call(ctx)
	defer cancel()
	defer r.revoked.invalidate(key)
	got, err := r.runScript(ctx, revokeTokenScript, []string{r.revokedKey(key)},
		val, rv.Expires().UnixMilli(), rv.Until.UnixMilli(), r.channel, r.origin+"|t:"+key).Text()
	if err != nil {
		return access.Revocation{}, r.unavailable("revoke token", err)
	}
	return decodeRevocation(got)
}

// TokenRevoked implements [access.Revocations]: from the local cache when
// it holds the token's keys (the jti's, when there is one, and the
// hash's), else with one pipelined read of the missing keys.
func (r *Redis) TokenRevoked(ctx context.Context, jti, tokenSHA256 string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var keys [2]string
	n := 0
	if jti != "" {
		keys[n] = access.JTIKey(jti)
		n++
	}
	if tokenSHA256 != "" {
		keys[n] = access.HashKey(tokenSHA256)
		n++
	}
	now := r.now()
	var missing [2]string
	m := 0
	trusted := r.trusted.Load()
	for _, k := range keys[:n] {
		if trusted {
			if e, ok := r.revoked.get(k); ok {
				if now.Before(e.revokedUntil) {
					return true, nil
				}
				continue
			}
		}
		missing[m] = k
		m++
	}
	if m == 0 {
		return false, nil
	}
	var gens [2]uint64
	for i, k := range missing[:m] {
		gens[i] = r.revoked.generation(k)
	}
	if !r.reads.allow() {
		return false, unavailable("read revocations", ErrBreakerOpen)
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	cmds := make([]*redis.StringCmd, m)
	_, err := r.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		for i, k := range missing[:m] {
			cmds[i] = p.Get(cctx, r.revokedKey(k))
		}
		return nil
	})
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	r.reads.done(ctx, err)
	if err != nil {
		return false, unavailable("read revocations", err)
	}
	cachedUntil := time.Now().Add(r.cacheTTL)
	revoked := false
	for i, k := range missing[:m] {
		e := &revocationEntry{cachedUntil: cachedUntil}
		val, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return false, unavailable("read revocations", err)
		default:
			rv, err := decodeRevocation(val)
			if err != nil {
				return false, err
			}
			e.revokedUntil = rv.Expires()
		}
		r.revoked.add(k, e, gens[i])
		revoked = revoked || now.Before(e.revokedUntil)
	}
	return revoked, nil
}

func decodeRevocation(val string) (access.Revocation, error) {
	_, doc, ok := strings.Cut(val, "|")
	var d revocationDoc
	if !ok || json.Unmarshal([]byte(doc), &d) != nil || (d.JTI == "" && d.TokenSHA256 == "") {
		return access.Revocation{}, fmt.Errorf("malformed token revocation in redis: %w", ErrUnavailable)
	}
	return access.Revocation{JTI: d.JTI, TokenSHA256: d.TokenSHA256, Until: d.Until, RevokedBy: d.RevokedBy, RevokedAt: d.RevokedAt}, nil
}
