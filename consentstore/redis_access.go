package consentstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// Break-glass grants live in the patient's hash PREFIX:{Patient/id}:grants
// (grant id → "EXPIRES_MS|REVOKED|JSON"), whose Redis TTL is extended to the
// latest expiry; expired grants are pruned on the next write for the
// patient. A write bumps the patient's version and invalidates the
// patient's cache entry, so grants are cached with the consents.
// PREFIX:grant:{id} (→ patient) and PREFIX:subject:{subject}:grants
// (id → patient) index them by id and subject, with the same TTL.
//
// Vendor agreements live in PREFIX:agreement:{clientId}
// ("REVOKED|UPDATED_UNIX_NANOS|JSON"); a write publishes "a:clientId".

var (
	// KEYS version, grants; ARGV id, value, now ms, ttl ms, channel, message.
	putGrantScript = redis.NewScript(`
local all = redis.call('HGETALL', KEYS[2])
local now = tonumber(ARGV[3])
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i + 1], '^(%d+)|'))
  if exp == nil or exp <= now then redis.call('HDEL', KEYS[2], all[i]) end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[4])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1`)
	// KEYS version, grants; ARGV id, channel, message. Nil when absent.
	revokeGrantScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return false end
local exp, rest = string.match(cur, '^(%d+)|[01]|(.*)$')
if exp == nil then return redis.error_reply('malformed grant') end
local val = exp .. '|1|' .. rest
redis.call('HSET', KEYS[2], ARGV[1], val)
redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return val`)
	// KEYS agreement; ARGV value, channel, message.
	putAgreementScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`)
	// KEYS agreement; ARGV updated nanos, channel, message. Nil when absent.
	revokeAgreementScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local rest = string.match(cur, '^[01]|%d+|(.*)$')
if rest == nil then return redis.error_reply('malformed agreement') end
local val = '1|' .. ARGV[1] .. '|' .. rest
redis.call('SET', KEYS[1], val)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return val`)
)

type grantDoc struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Patient   string    `json:"patient"`
	Reason    string    `json:"reason"`
	GrantedBy string    `json:"grantedBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// PutGrant implements [access.Grants]. The grant's patient is stored in
// canonical form ("Patient/52"); it must expire within [access.MaxGrantTTL].
func (r *Redis) PutGrant(ctx context.Context, g access.Grant) (access.Grant, error) {
	if err := ctx.Err(); err != nil {
		return access.Grant{}, err
	}
	now := r.now()
	ttl := g.ExpiresAt.Sub(now)
	switch {
	case g.Subject == "":
		return access.Grant{}, &access.InvalidError{Field: "subject", Message: "is required"}
	case g.Patient == "":
		return access.Grant{}, &access.InvalidError{Field: "patient", Message: "is required"}
	case ttl <= 0:
		return access.Grant{}, &access.InvalidError{Field: "ttl", Message: "the grant has expired"}
	case ttl > access.MaxGrantTTL+time.Minute:
		return access.Grant{}, &access.InvalidError{Field: "ttl", Message: fmt.Sprintf("must be at most %s", access.MaxGrantTTL)}
	}
	if g.ID == "" {
		g.ID = access.NewID()
	}
	g.Patient = fhirconsent.CanonicalReference(g.Patient)
	g.Revoked = false
	doc, err := json.Marshal(grantDoc{g.ID, g.Subject, g.Patient, g.Reason, g.GrantedBy, g.CreatedAt, g.ExpiresAt})
	if err != nil {
		return access.Grant{}, fmt.Errorf("put grant: %w", err)
	}
	sealed, err := r.aead.seal(doc, grantAdditional(g.Patient, g.ID))
	if err != nil {
		return access.Grant{}, fmt.Errorf("put grant: %w", err)
	}
	val := strconv.FormatInt(g.ExpiresAt.UnixMilli(), 10) + "|0|" + sealed
	ctx, cancel := r.call(ctx)
	defer cancel()
	defer r.invalidatePatient(g.Patient)
	// Indexes first (other slots), then the patient's hash atomically.
	idKey, sk := r.grantIDKey(g.ID), r.subjectGrantsKey(g.Subject)
	err = r.write(ctx, idKey, func(c redis.Cmdable) error { return c.Set(ctx, idKey, g.Patient, ttl).Err() })
	if err == nil {
		err = r.write(ctx, sk, func(c redis.Cmdable) error {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, sk, g.ID, g.Patient)
				p.PExpire(ctx, sk, access.MaxGrantTTL+time.Minute)
				return nil
			})
			return err
		})
	}
	if err != nil {
		return access.Grant{}, r.unavailable("put grant", err)
	}
	if err := r.runScript(ctx, putGrantScript, []string{r.versionKey(g.Patient), r.grantsKey(g.Patient)},
		g.ID, val, now.UnixMilli(), ttl.Milliseconds()+1, r.channel, r.patientMsg(g.Patient)).Err(); err != nil {
		return access.Grant{}, r.unavailable("put grant", err)
	}
	return g, nil
}

// RevokeGrant implements [access.Grants]; an expired grant is not found.
func (r *Redis) RevokeGrant(ctx context.Context, id string) (access.Grant, error) {
	if err := ctx.Err(); err != nil {
		return access.Grant{}, err
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	patient, err := r.client.Get(ctx, r.grantIDKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return access.Grant{}, fmt.Errorf("revoke grant %q: %w", id, access.ErrNotFound)
	}
	if err != nil {
		return access.Grant{}, r.unavailable("revoke grant", err)
	}
	defer r.invalidatePatient(patient)
	val, err := r.runScript(ctx, revokeGrantScript, []string{r.versionKey(patient), r.grantsKey(patient)},
		id, r.channel, r.patientMsg(patient)).Text()
	if errors.Is(err, redis.Nil) {
		return access.Grant{}, fmt.Errorf("revoke grant %q: %w", id, access.ErrNotFound)
	}
	if err != nil {
		return access.Grant{}, r.unavailable("revoke grant", err)
	}
	return r.decodeGrant(patient, id, val)
}

// ListGrants implements [access.Grants]: the unexpired grants of subject
// and/or patient (one of them is required), oldest first.
func (r *Redis) ListGrants(ctx context.Context, subject, patient string) ([]access.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if subject == "" && patient == "" {
		return nil, &access.InvalidError{Field: "subject", Message: "subject or patient is required"}
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	patients := []string{fhirconsent.CanonicalReference(patient)}
	if patient == "" {
		byID, err := r.client.HGetAll(ctx, r.subjectGrantsKey(subject)).Result()
		if err != nil {
			return nil, r.unavailable("list grants", err)
		}
		patients = patients[:0]
		for _, p := range byID {
			if !slices.Contains(patients, p) {
				patients = append(patients, p)
			}
		}
	}
	now := r.now()
	var out []access.Grant
	for _, p := range patients {
		vals, err := r.client.HGetAll(ctx, r.grantsKey(p)).Result()
		if err != nil {
			return nil, r.unavailable("list grants", err)
		}
		gs, err := r.decodeGrants(p, vals)
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			if (subject == "" || g.Subject == subject) && now.Before(g.ExpiresAt) {
				out = append(out, g)
			}
		}
	}
	slices.SortFunc(out, func(a, b access.Grant) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// ActiveGrant implements [access.Grants] (and engine.GrantLookup) from the
// patient's cache entry: no round trip when it is cached.
func (r *Redis) ActiveGrant(ctx context.Context, subject, patient string, at time.Time) (access.Grant, bool, error) {
	if err := ctx.Err(); err != nil {
		return access.Grant{}, false, err
	}
	e, err := r.patient(ctx, patient)
	if err != nil {
		return access.Grant{}, false, err
	}
	for _, g := range e.grants {
		if g.Subject == subject && g.ActiveAt(at) {
			return g, true, nil
		}
	}
	return access.Grant{}, false, nil
}

func (r *Redis) decodeGrants(patient string, vals map[string]string) ([]access.Grant, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := make([]access.Grant, 0, len(vals))
	for id, v := range vals {
		g, err := r.decodeGrant(patient, id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b access.Grant) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (r *Redis) decodeGrant(patient, id, val string) (access.Grant, error) {
	_, flag, sealed, ok := cutFields(val)
	if !ok {
		return access.Grant{}, fmt.Errorf("malformed grant in redis: %w", ErrUnavailable)
	}
	doc, err := r.aead.open([]byte(sealed), grantAdditional(patient, id))
	if err != nil {
		return access.Grant{}, fmt.Errorf("grant %q: %w", id, err)
	}
	var d grantDoc
	if json.Unmarshal(doc, &d) != nil {
		return access.Grant{}, fmt.Errorf("malformed grant in redis: %w", ErrUnavailable)
	}
	return access.Grant{ID: d.ID, Subject: d.Subject, Patient: d.Patient, Reason: d.Reason, GrantedBy: d.GrantedBy,
		CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt, Revoked: flag == "1"}, nil
}

type agreementDoc struct {
	ClientID      string    `json:"clientId"`
	Vendor        string    `json:"vendor"`
	Tier          string    `json:"tier,omitempty"`
	BAASigned     bool      `json:"baaSigned"`
	BAAExpires    time.Time `json:"baaExpires,omitzero"`
	Purposes      []string  `json:"purposes,omitempty"`
	ResourceTypes []string  `json:"resourceTypes,omitempty"`
}

// agreementEntry caches a client's agreement, or its absence.
type agreementEntry struct {
	a       access.Agreement
	found   bool
	expires time.Time
}

func (e *agreementEntry) expiry() time.Time { return e.expires }

// PutAgreement implements [access.Agreements].
func (r *Redis) PutAgreement(ctx context.Context, a access.Agreement) (access.Agreement, error) {
	if err := ctx.Err(); err != nil {
		return access.Agreement{}, err
	}
	if err := a.Validate(); err != nil {
		return access.Agreement{}, err
	}
	a.Revoked = false
	a.UpdatedAt = r.now()
	doc, err := json.Marshal(agreementDoc{a.ClientID, a.Vendor, a.Tier, a.BAASigned, a.BAAExpires, a.Purposes, a.ResourceTypes})
	if err != nil {
		return access.Agreement{}, fmt.Errorf("put agreement: %w", err)
	}
	sealed, err := r.aead.seal(doc, agreementAdditional(a.ClientID))
	if err != nil {
		return access.Agreement{}, fmt.Errorf("put agreement: %w", err)
	}
	val := "0|" + strconv.FormatInt(a.UpdatedAt.UnixNano(), 10) + "|" + sealed
	ctx, cancel := r.call(ctx)
	defer cancel()
	defer r.agreements.invalidate(a.ClientID)
	if err := r.runScript(ctx, putAgreementScript, []string{r.agreementKey(a.ClientID)},
		val, r.channel, r.agreementMsg(a.ClientID)).Err(); err != nil {
		return access.Agreement{}, r.unavailable("put agreement", err)
	}
	return a, nil
}

// GetAgreement implements [access.Agreements] (and engine.AgreementLookup),
// from the cache when it holds the client (its absence too).
func (r *Redis) GetAgreement(ctx context.Context, clientID string) (access.Agreement, error) {
	if err := ctx.Err(); err != nil {
		return access.Agreement{}, err
	}
	if r.trusted.Load() {
		if e, ok := r.agreements.get(clientID); ok {
			if !e.found {
				return access.Agreement{}, access.ErrNotFound
			}
			return e.a, nil
		}
	}
	gen := r.agreements.generation(clientID)
	reads := r.readBreaker(ctx, r.agreementKey(clientID))
	if !reads.allow() {
		return access.Agreement{}, r.unavailable("get agreement", ErrBreakerOpen)
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	val, err := r.client.Get(cctx, r.agreementKey(clientID)).Result()
	if errors.Is(err, redis.Nil) {
		reads.done(ctx, nil)
	} else {
		reads.done(ctx, err)
	}
	e := &agreementEntry{expires: time.Now().Add(r.cacheTTL)}
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return access.Agreement{}, r.unavailable("get agreement", err)
	default:
		if e.a, err = r.decodeAgreement(clientID, val); err != nil {
			return access.Agreement{}, err
		}
		e.found = true
	}
	r.agreements.add(clientID, e, gen)
	if !e.found {
		return access.Agreement{}, access.ErrNotFound
	}
	return e.a, nil
}

// RevokeAgreement implements [access.Agreements]: the agreement stays
// readable as revoked.
func (r *Redis) RevokeAgreement(ctx context.Context, clientID string) (access.Agreement, error) {
	if err := ctx.Err(); err != nil {
		return access.Agreement{}, err
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	defer r.agreements.invalidate(clientID)
	val, err := r.runScript(ctx, revokeAgreementScript, []string{r.agreementKey(clientID)},
		r.now().UnixNano(), r.channel, r.agreementMsg(clientID)).Text()
	if errors.Is(err, redis.Nil) {
		return access.Agreement{}, fmt.Errorf("revoke agreement %q: %w", clientID, access.ErrNotFound)
	}
	if err != nil {
		return access.Agreement{}, r.unavailable("revoke agreement", err)
	}
	return r.decodeAgreement(clientID, val)
}

func (r *Redis) decodeAgreement(clientID, val string) (access.Agreement, error) {
	flag, nanos, sealed, ok := cutFields(val)
	n, err := strconv.ParseInt(nanos, 10, 64)
	if !ok || err != nil {
		return access.Agreement{}, fmt.Errorf("malformed agreement in redis: %w", ErrUnavailable)
	}
	doc, err := r.aead.open([]byte(sealed), agreementAdditional(clientID))
	if err != nil {
		return access.Agreement{}, fmt.Errorf("agreement %q: %w", clientID, err)
	}
	var d agreementDoc
	if json.Unmarshal(doc, &d) != nil {
		return access.Agreement{}, fmt.Errorf("malformed agreement in redis: %w", ErrUnavailable)
	}
	return access.Agreement{ClientID: d.ClientID, Vendor: d.Vendor, Tier: d.Tier, BAASigned: d.BAASigned, BAAExpires: d.BAAExpires,
		Purposes: d.Purposes, ResourceTypes: d.ResourceTypes, Revoked: flag == "1", UpdatedAt: time.Unix(0, n)}, nil
}
