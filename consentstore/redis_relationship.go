package consentstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Treating relationships live in the patient's hash
// PREFIX:{Patient/id}:relationships (relationship id → JSON), which is all
// the decision path reads. PREFIX:relationship:{id} (→ "patient|practitioner")
// and PREFIX:practitioner:{ref}:relationships (id → patient) index them by
// id and practitioner. Every key is in one slot (Cluster) and written by a
// separate command: a put writes the indexes before the patient's hash, a
// delete removes the entry from the patient's hash first, so a relationship
// counts for decisions only while it is fully written; a stale index entry
// left by an interrupted write is skipped when listing.

var _ Relationships = (*Redis)(nil)

func (r *Redis) relationshipsKey(patient string) string {
	return r.prefix + ":{" + patient + "}:relationships"
}
func (r *Redis) relationshipIDKey(id string) string { return r.prefix + ":relationship:{" + id + "}" }
func (r *Redis) practitionerRelationshipsKey(practitioner string) string {
	return r.prefix + ":practitioner:{" + practitioner + "}:relationships"
}

// PutRelationship implements [Relationships].
func (r *Redis) PutRelationship(ctx context.Context, rel Relationship) (Relationship, error) {
	rel, err := rel.Normalize()
	if err != nil {
		return Relationship{}, err
	}
	rel.UpdatedAt = r.now().UTC()
	raw, err := json.Marshal(rel)
	if err != nil {
		return Relationship{}, fmt.Errorf("put relationship: %w", err)
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	old, err := r.client.Get(cctx, r.relationshipIDKey(rel.ID)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Relationship{}, r.unavailable("put relationship", err)
	}
	if oldPatient, oldPract, ok := strings.Cut(old, "|"); ok {
		// The id moves to another patient or practitioner: it stops
		// counting for the old pair first.
		if oldPatient != rel.Patient {
			if err := r.client.HDel(cctx, r.relationshipsKey(oldPatient), rel.ID).Err(); err != nil {
				return Relationship{}, r.unavailable("put relationship", err)
			}
		}
		if oldPract != rel.Practitioner {
			if err := r.client.HDel(cctx, r.practitionerRelationshipsKey(oldPract), rel.ID).Err(); err != nil {
				return Relationship{}, r.unavailable("put relationship", err)
			}
		}
	}
	if err := r.client.Set(cctx, r.relationshipIDKey(rel.ID), rel.Patient+"|"+rel.Practitioner, 0).Err(); err != nil {
		return Relationship{}, r.unavailable("put relationship", err)
	}
	if err := r.client.HSet(cctx, r.practitionerRelationshipsKey(rel.Practitioner), rel.ID, rel.Patient).Err(); err != nil {
		return Relationship{}, r.unavailable("put relationship", err)
	}
	if err := r.client.HSet(cctx, r.relationshipsKey(rel.Patient), rel.ID, raw).Err(); err != nil {
		return Relationship{}, r.unavailable("put relationship", err)
	}
	return rel, nil
}

// DeleteRelationship implements [Relationships].
func (r *Redis) DeleteRelationship(ctx context.Context, id string) (Relationship, error) {
	cctx, cancel := r.call(ctx)
	defer cancel()
	idx, err := r.client.Get(cctx, r.relationshipIDKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return Relationship{}, ErrRelationshipNotFound
	}
	if err != nil {
		return Relationship{}, r.unavailable("delete relationship", err)
	}
	patient, pract, _ := strings.Cut(idx, "|")
	raw, err := r.client.HGet(cctx, r.relationshipsKey(patient), id).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Relationship{}, r.unavailable("delete relationship", err)
	}
	var rel Relationship
	found := err == nil
	if found {
		if err := json.Unmarshal([]byte(raw), &rel); err != nil {
			return Relationship{}, fmt.Errorf("delete relationship %q: malformed record: %w", id, err)
		}
	}
	// The patient's hash first: from here on it no longer counts.
	if err := r.client.HDel(cctx, r.relationshipsKey(patient), id).Err(); err != nil {
		return Relationship{}, r.unavailable("delete relationship", err)
	}
	if err := r.client.HDel(cctx, r.practitionerRelationshipsKey(pract), id).Err(); err != nil {
		return Relationship{}, r.unavailable("delete relationship", err)
	}
	if err := r.client.Del(cctx, r.relationshipIDKey(id)).Err(); err != nil {
		return Relationship{}, r.unavailable("delete relationship", err)
	}
	if !found {
		return Relationship{}, ErrRelationshipNotFound
	}
	return rel, nil
}

// PatientRelationships implements [Relationships].
func (r *Redis) PatientRelationships(ctx context.Context, patient string) ([]Relationship, error) {
	cctx, cancel := r.call(ctx)
	defer cancel()
	all, err := r.client.HGetAll(cctx, r.relationshipsKey(patient)).Result()
	if err != nil {
		return nil, r.unavailable("list relationships", err)
	}
	out := make([]Relationship, 0, len(all))
	for id, raw := range all {
		var rel Relationship
		if err := json.Unmarshal([]byte(raw), &rel); err != nil {
			return nil, fmt.Errorf("list relationships: %q: malformed record: %w", id, err)
		}
		out = append(out, rel)
	}
	slices.SortFunc(out, func(a, b Relationship) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// PractitionerRelationships implements [Relationships].
func (r *Redis) PractitionerRelationships(ctx context.Context, practitioner string) ([]Relationship, error) {
	cctx, cancel := r.call(ctx)
	defer cancel()
	idx, err := r.client.HGetAll(cctx, r.practitionerRelationshipsKey(practitioner)).Result()
	if err != nil {
		return nil, r.unavailable("list relationships", err)
	}
	var out []Relationship
	for id, patient := range idx {
		raw, err := r.client.HGet(cctx, r.relationshipsKey(patient), id).Result()
		if errors.Is(err, redis.Nil) {
			continue // an interrupted write or delete
		}
		if err != nil {
			return nil, r.unavailable("list relationships", err)
		}
		var rel Relationship
		if err := json.Unmarshal([]byte(raw), &rel); err != nil {
			return nil, fmt.Errorf("list relationships: %q: malformed record: %w", id, err)
		}
		if rel.Practitioner == practitioner {
			out = append(out, rel)
		}
	}
	slices.SortFunc(out, func(a, b Relationship) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// ActiveRelationship implements [Relationships]: one read of the patient's
// hash. It is not cached, so a delete counts at once on every replica.
func (r *Redis) ActiveRelationship(ctx context.Context, practitioner, patient string, at time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if practitioner == "" || patient == "" {
		return false, nil
	}
	key := r.relationshipsKey(patient)
	reads := r.readBreaker(ctx, key)
	if !reads.allow() {
		return false, r.unavailable("relationships", ErrBreakerOpen)
	}
	cctx, cancel := r.call(ctx)
	defer cancel()
	vals, err := r.client.HVals(cctx, key).Result()
	reads.done(ctx, err)
	if err != nil {
		return false, r.unavailable("relationships", err)
	}
	for _, raw := range vals {
		var rel Relationship
		if err := json.Unmarshal([]byte(raw), &rel); err != nil {
			return false, fmt.Errorf("relationships of %s: malformed record: %w", patient, err)
		}
		if rel.Practitioner == practitioner && rel.Patient == patient && rel.ActiveAt(at) {
			return true, nil
		}
	}
	return false, nil
}
