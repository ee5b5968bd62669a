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
// # Cluster and Sentinel
//
// Which keys share a Cluster slot, and why:
//
//   - PREFIX:{Patient/id}:version, :consents and :grants carry the patient
//     as hash tag: one slot per patient, so the write scripts (consent put
//     and revoke, grant put and revoke) update them atomically and the
//     cold read fetches them in one MULTI/EXEC round trip.
//   - PREFIX:consent:{id} and PREFIX:grant:{id} (id → patient) are in the
//     id's slot, PREFIX:subject:{subject}:grants in the subject's,
//     PREFIX:agreement:{clientId} in the client's. They are never in one
//     script with the patient's keys: a consent Put claims the id first
//     (its own script), then writes the patient's keys, so a record is
//     reachable by id as soon as it exists and a failed write leaves at
//     most a claim that still names the right patient; grant indexes are
//     written before the grant.
//   - Invalidations are classic PUBLISH on PREFIX:invalidate from inside
//     the write scripts. On a Cluster the store subscribes on every
//     master (not only on the channel's slot owner): a master delivers its
//     own scripts' messages to its local subscribers before the writer's
//     reply, so a replica cannot miss an acknowledged write without also
//     losing that master's subscription, which drops its cache. The set of
//     masters is checked every ping interval ([WithPingInterval]); when a
//     failover changes it, the subscriptions are made anew (the cache is
//     dropped and refilled). Sharded pub/sub (SPUBLISH) would need the
//     channel in each patient's slot, one channel per patient to
//     subscribe to, so it is not used.
//
// With [WithMinReplicasAck] (serve's --redis-min-replicas-ack, default 1
// on Sentinel and on a Cluster with replicas) every write runs on one
// connection of the master of its first key followed by WAIT on that
// connection; fewer replicas than asked within the timeout fail the write
// with [ErrNotReplicated]: the write may have been applied on the master,
// but it is not reported done, so a failover cannot lose a revocation that
// was acknowledged.
//
// Faults: any Redis error on a Cluster client asks go-redis to reload its
// slot map (its own reload interval is 60 s by default), so a promoted
// replica is used within the next read after the promotion. Reads have one
// breaker per Cluster master: a dead master fails its own slots fast while
// the other slots keep answering, and a promoted replica starts with a
// closed breaker. A Sentinel client follows the master Sentinel names.
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
