// Package consentstore keeps compiled FHIR Consent resources
// ([fhirconsent.Consent]) by id and by patient.
//
// [Memory] is the in-memory [Store]; the same behaviour is checked for every
// implementation by package storetest. [Store.ForPatient] is the hot-path
// read: the patient's consents that are not revoked, and a version string
// that changes on every write for the patient.
//
// [Store.Put] refuses, writing nothing: an id that is not a FHIR id and a
// consent dated (R4 dateTime, R5 date) more than [Limits.MaxClockSkew] in
// the future of the store's clock ([ErrInvalid], a [*InvalidError] naming
// the element), an id that is stored for another patient
// ([ErrOtherPatient]), a stale [IfVersion] ([ErrVersionMismatch]), and what
// exceeds [Limits] ([ErrLimit]): bytes per consent, provisions per consent,
// records per patient. [WithMemoryLimits] and [WithLimits] set them.
//
//	_, err := store.Put(ctx, c, consentstore.IfVersion(rec.Version))
//	if errors.Is(err, consentstore.ErrVersionMismatch) {
//		// someone else wrote it first: read it again
//	}
//
// Reading and compiling the
// FHIR resource is package github.com/chaperone-pdp/chaperone/fhirconsent;
// [Memory.Load] seeds a store from files of resources.
//
// # Redis
//
// [Redis] is the implementation shared by replicas (go-redis
// UniversalClient: standalone, Sentinel or Cluster). It also keeps
// break-glass grants ([access.Grants]) and vendor agreements
// ([access.Agreements]), so one client serves all three.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	store, err := consentstore.NewRedis(rdb, consentstore.WithCache(100_000, time.Minute))
//	defer store.Close()
//
// Keys carry a hash tag on the patient, so one patient's data is in one
// Cluster slot: PREFIX:{Patient/52}:version (a counter), :consents (a hash
// id → "VERSION|REVOKED|PAYLOAD"), :grants. Every write runs as one Lua
// script that bumps the patient's version, writes the record and publishes
// an invalidation on PREFIX:invalidate. Revoked records stay in the hash,
// readable as revoked. PREFIX:consent:{id} maps an id to its patient: a
// Put claims it first with a script in the id's slot (refused when another
// patient holds it; a fresh claim is tentative, "PATIENT|TOKEN", until the
// record is written, and released when the write is refused), then the
// write script checks ifVersion and the patient's record count against the
// hash and writes, all in the patient's slot. An id never changes patient.
//
// Each replica caches, per patient, the compiled [Set] and the grants (a
// bounded LRU with a TTL), and each client's agreement. A miss costs one
// MULTI/EXEC round trip and compiles the records; a hit costs none and
// does not parse. Every write drops the entry on the writing replica at
// once and on the others when the invalidation arrives. The cache is
// served only while the invalidation subscription is live: when it drops
// (Redis down, connection killed, PING unanswered) the whole cache is
// dropped, because invalidations may have been missed, and it is dropped
// again once the subscription is back.
//
// The token revocation list ([access.Revocations]) is one key per revoked
// token, PREFIX:revoked:j:JTI or PREFIX:revoked:h:SHA256, which Redis
// expires itself (PXAT) at the revocation's until plus
// [access.RevocationGrace]. A revocation publishes "t:KEY" on the same
// channel; lookups, the absence of an entry too, are cached like
// agreements, so a token seen before is checked without a round trip.
//
// Fail closed: every Redis call is bounded by a timeout
// ([WithRedisTimeout]); a read that cannot reach Redis and has no
// trustworthy cache entry returns an error wrapping [ErrUnavailable], which
// the engine answers with DENY CONSENT_UNAVAILABLE. After two failed reads
// in a row, decision-path reads fail at once ([ErrBreakerOpen]) for 500ms
// instead of each waiting for the timeout; a read after that window, or a
// re-established subscription, tries Redis again. Redis errors are
// translated at the edge: redis.Nil is [ErrNotFound] (or
// access.ErrNotFound).
//
// Encryption at rest: with [WithKeySet] (a [keyset.Set] of AES-256 keys;
// [WithEncryptionKey] for a set of one) consent payloads, break-glass
// grants and vendor agreements are sealed with AES-256-GCM and a random
// nonce under the set's primary key, bound to where they are stored
// (patient and id, client id); the key id is stored with each record and
// reads use it, so a set holding the old and the new key reads both while
// [Redis.Reencrypt] rewrites everything under the new one (resumably, from
// a SCAN cursor). A record under a key id the set does not hold, and a
// record in clear text, fail closed ([ErrSealed], [ErrCleartext]): a
// record written by someone without the key never decides. Key names
// (patient references, consent, grant and client ids) are not encrypted.
// chaperone serve always encrypts when it uses Redis.
//
// Evaluation of a request against consents lives in package
// github.com/chaperone-pdp/chaperone/engine/consent.
package consentstore
