package consentstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

var (
	_ Store             = (*Redis)(nil)
	_ access.Grants     = (*Redis)(nil)
	_ access.Agreements = (*Redis)(nil)
)

// ErrUnavailable wraps every failure to reach Redis (refused, timed out,
// unexpected reply): the state is unknown and callers must fail closed.
var ErrUnavailable = errors.New("consent store unavailable")

// ErrNotReplicated is the cause of an [ErrUnavailable] returned by a write
// that Redis applied on the master but fewer replicas than
// [WithMinReplicasAck] acknowledged in time (WAIT): the write could be lost
// in a failover, so it is not reported as done.
var ErrNotReplicated = errors.New("write not acknowledged by enough replicas")

// Defaults of [NewRedis].
const (
	DefaultRedisPrefix  = "chaperone"
	DefaultRedisTimeout = 500 * time.Millisecond
	DefaultCacheSize    = 100_000
	DefaultCacheTTL     = time.Minute
	defaultPingInterval = time.Second
	maxResubscribeWait  = 250 * time.Millisecond
)

// Redis is a [Store] (and an [access.Grants] and [access.Agreements]) kept
// in Redis and shared by every replica, with a local cache per replica.
// See the package documentation for its keys, cache and failure behaviour.
// Close stops its invalidation listener; the client stays the caller's.
type Redis struct {
	client       redis.UniversalClient
	prefix       string
	channel      string
	origin       string
	timeout      time.Duration
	pingInterval time.Duration
	cacheSize    int
	cacheTTL     time.Duration
	aead         *sealer
	logger       *slog.Logger
	now          func() time.Time
	limits       Limits
	minAcks      int // replicas that must acknowledge a write (WAIT)

	patients   *localCache[*patientEntry]
	agreements *localCache[*agreementEntry]
	revoked    *localCache[*revocationEntry] // token revocation list (redis_revocation.go)
	trusted    atomic.Bool                   // the invalidation subscription is live
	flushes    atomic.Uint64                 // times the whole cache was dropped
	reads      breaker                       // fails hot-path reads fast while Redis is down
	nodeReads  sync.Map                      // Cluster: master address → *breaker, per node
	hits       atomic.Uint64                 // patient lookups answered by the cache
	misses     atomic.Uint64                 // patient lookups that went to Redis

	cancel context.CancelFunc
	done   chan struct{}
	psMu   sync.Mutex
	ps     map[*redis.PubSub]bool // live subscriptions, closed by Close
	closed bool
}

// RedisOption configures a [Redis] store.
type RedisOption func(*Redis) error

// WithRedisPrefix sets the key prefix (default "chaperone"); the
// invalidation channel is PREFIX:invalidate.
func WithRedisPrefix(p string) RedisOption {
	return func(r *Redis) error {
		if p == "" || strings.ContainsAny(p, "{}") {
			return fmt.Errorf("redis prefix %q: must be non-empty without braces", p)
		}
		r.prefix = p
		return nil
	}
}

// WithRedisTimeout bounds every Redis call (default 500ms).
func WithRedisTimeout(d time.Duration) RedisOption {
	return func(r *Redis) error {
		if d <= 0 {
			return fmt.Errorf("redis timeout %s: must be positive", d)
		}
		r.timeout = d
		return nil
	}
}

// WithCache sets the local cache's size (entries per kind: patients and
// client agreements) and how long an entry may be served (default 100000
// and 1m). A size of 0 turns the cache off: every read goes to Redis.
func WithCache(size int, ttl time.Duration) RedisOption {
	return func(r *Redis) error {
		if size < 0 || ttl < 0 {
			return fmt.Errorf("cache size %d, ttl %s: must not be negative", size, ttl)
		}
		if ttl == 0 {
			size = 0
		}
		r.cacheSize, r.cacheTTL = size, ttl
		return nil
	}
}

// WithRedisLogger sets the logger for subscription losses and recoveries.
func WithRedisLogger(l *slog.Logger) RedisOption {
	return func(r *Redis) error { r.logger = l; return nil }
}

// WithPingInterval sets how often an idle invalidation subscription is
// checked with PING (default 1s); a PING unanswered by the next check
// counts as a lost subscription.
func WithPingInterval(d time.Duration) RedisOption {
	return func(r *Redis) error {
		if d <= 0 {
			return fmt.Errorf("ping interval %s: must be positive", d)
		}
		r.pingInterval = d
		return nil
	}
}

// WithMinReplicasAck makes every write (consent Put and Revoke, grant and
// agreement writes) wait until n replicas of the master that applied it
// acknowledge it (Redis WAIT, bounded by the store timeout); with fewer the
// write returns [ErrNotReplicated] (wrapped in [ErrUnavailable]). Default 0:
// no wait, right for a single server.
func WithMinReplicasAck(n int) RedisOption {
	return func(r *Redis) error {
		if n < 0 {
			return fmt.Errorf("min replicas ack %d: must not be negative", n)
		}
		r.minAcks = n
		return nil
	}
}

// WithLimits sets what Put accepts (default: [Limits] defaults).
func WithLimits(l Limits) RedisOption {
	return func(r *Redis) error { r.limits = l.withDefaults(); return nil }
}

// WithClock sets the clock used for grant expiry, agreement update times
// and the check of consent dates.
func WithClock(now func() time.Time) RedisOption {
	return func(r *Redis) error {
		if now != nil {
			r.now = now
		}
		return nil
	}
}

// NewRedis returns a store on client and starts its invalidation listener.
// The cache serves nothing until the listener is subscribed.
func NewRedis(client redis.UniversalClient, opts ...RedisOption) (*Redis, error) {
	r := &Redis{
		client:       client,
		prefix:       DefaultRedisPrefix,
		timeout:      DefaultRedisTimeout,
		pingInterval: defaultPingInterval,
		cacheSize:    DefaultCacheSize,
		cacheTTL:     DefaultCacheTTL,
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:          time.Now,
		limits:       Limits{}.withDefaults(),
		done:         make(chan struct{}),
	}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	r.channel = r.prefix + ":invalidate"
	r.reads.now = time.Now
	var err error
	if r.origin, err = newID(); err != nil {
		return nil, err
	}
	if r.patients, err = newLocalCache[*patientEntry](r.cacheSize); err != nil {
		return nil, err
	}
	if r.agreements, err = newLocalCache[*agreementEntry](r.cacheSize); err != nil {
		return nil, err
	}
	if r.revoked, err = newLocalCache[*revocationEntry](r.cacheSize); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.listen(ctx)
	return r, nil
}

// Close stops the invalidation listener and drops the cache. It does not
// close the client.
func (r *Redis) Close() error {
	r.psMu.Lock()
	r.closed = true
	for ps := range r.ps {
		_ = ps.Close()
	}
	r.psMu.Unlock()
	r.cancel()
	<-r.done
	r.untrust()
	return nil
}

// CacheStats describes the local cache.
type CacheStats struct {
	// Subscribed is true while invalidations are received: only then is
	// the cache served.
	Subscribed bool
	// Patients and Agreements are the number of cached entries.
	Patients, Agreements int
	// Flushes counts how often the whole cache was dropped (subscription
	// lost or re-established).
	Flushes uint64
	// Hits and Misses count patient lookups answered by the local cache
	// and those that went to Redis.
	Hits, Misses uint64
}

// Stats reports the local cache's state.
func (r *Redis) Stats() CacheStats {
	return CacheStats{Subscribed: r.trusted.Load(), Patients: r.patients.len(), Agreements: r.agreements.len(),
		Flushes: r.flushes.Load(), Hits: r.hits.Load(), Misses: r.misses.Load()}
}

// Keys. Everything about one patient shares the hash tag {Patient/id}, so
// it lives in one Cluster slot and one script can update it atomically.
func (r *Redis) versionKey(patient string) string  { return r.prefix + ":{" + patient + "}:version" }
func (r *Redis) consentsKey(patient string) string { return r.prefix + ":{" + patient + "}:consents" }
func (r *Redis) grantsKey(patient string) string   { return r.prefix + ":{" + patient + "}:grants" }
func (r *Redis) consentIDKey(id string) string     { return r.prefix + ":consent:{" + id + "}" }
func (r *Redis) grantIDKey(id string) string       { return r.prefix + ":grant:{" + id + "}" }
func (r *Redis) subjectGrantsKey(subject string) string {
	return r.prefix + ":subject:{" + subject + "}:grants"
}
func (r *Redis) agreementKey(clientID string) string {
	return r.prefix + ":agreement:{" + clientID + "}"
}

// Invalidation messages: "ORIGIN|p:" + patient and "ORIGIN|a:" + client
// id, where ORIGIN names the store instance that wrote (it invalidated its
// own cache already, synchronously, and ignores its own messages).
func (r *Redis) patientMsg(patient string) string    { return r.origin + "|p:" + patient }
func (r *Redis) agreementMsg(clientID string) string { return r.origin + "|a:" + clientID }

// Scripts. A record value is "VERSION|REVOKED|PAYLOAD" (REVOKED 0 or 1;
// PAYLOAD the consent JSON, or its AES-GCM sealing).
var (
	// KEYS id index; ARGV patient, token. Claims the id for the patient:
	// 0 when another patient holds it; 1 when the id was free and is now
	// claimed tentatively ("PATIENT|TOKEN", made final or released by the
	// writer once its record is written or refused); 2 when the patient
	// holds it already (a tentative claim of another writer is adopted:
	// made final, so that writer's release leaves it). An id, once stored,
	// stays with its patient.
	claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2])
  return 1
end
local p = cur
local i = string.find(cur, '|', 1, true)
if i then p = string.sub(cur, 1, i - 1) end
if p ~= ARGV[1] then return 0 end
if i then redis.call('SET', KEYS[1], p) end
return 2`)
	// KEYS id index; ARGV tentative claim, final value ("" to release).
	settleScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1`)
	// KEYS version, consents; ARGV id, payload, if-version ("" none),
	// max records per patient (0 none), channel, message. The new version,
	// or -1 when if-version does not match, -2 when the patient is at the
	// limit; nothing is written then.
	putScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then
  if not cur then return -1 end
  local i = string.find(cur, '|', 1, true)
  if string.sub(cur, 1, i - 1) ~= ARGV[3] then return -1 end
end
local max = tonumber(ARGV[4])
if not cur and max > 0 and redis.call('HLEN', KEYS[2]) >= max then return -2 end
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], v .. '|0|' .. ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return v`)
	// KEYS version, consents, revoked; ARGV id, channel, message, now ms.
	// Nil when absent. The revocation time goes into the revoked hash
	// (id → ms) unless the record was revoked already.
	revokeScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return false end
local i = string.find(cur, '|', 1, true)
local payload = string.sub(cur, i + 3)
if KEYS[3] and string.sub(cur, i + 1, i + 1) ~= '1' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
local v = redis.call('INCR', KEYS[1])
local val = v .. '|1|' .. payload
redis.call('HSET', KEYS[2], ARGV[1], val)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return val`)
)

// call bounds one Redis operation by the store's timeout.
func (r *Redis) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// unavailable wraps a Redis failure; context errors of the caller stay
// recognisable with errors.Is.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// unavailable wraps a Redis failure and, on a Cluster, asks the client to
// reload its slot map: a node that stopped answering may have been failed
// over, and go-redis would otherwise learn it only from a MOVED reply or
// its periodic reload.
func (r *Redis) unavailable(op string, err error) error {
	r.refreshTopology()
	return unavailable(op, err)
}

// refreshTopology reloads a Cluster client's slot map (asynchronously; a
// no-op for other clients). go-redis coalesces reloads requested together.
func (r *Redis) refreshTopology() {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// nodeClient is the client of the node holding key as master: the Cluster
// master of key's slot, else the client itself (standalone or Sentinel).
func (r *Redis) nodeClient(ctx context.Context, key string) (*redis.Client, error) {
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("redis client %T: writes acknowledged by replicas need a standalone, Sentinel or Cluster client", r.client)
}

// write runs one write against key's master. With [WithMinReplicasAck] it
// runs on one connection of that master followed by WAIT on the same
// connection, and fails with [ErrNotReplicated] when fewer replicas
// acknowledged it within the store timeout. A reply error of the write
// itself (redis.Nil included) is returned as is, without waiting.
func (r *Redis) write(ctx context.Context, key string, do func(c redis.Cmdable) error) error {
	if r.minAcks == 0 {
		return do(r.client)
	}
	node, err := r.nodeClient(ctx, key)
	if err != nil {
		return err
	}
	conn := node.Conn()
	defer conn.Close()
	if err := do(conn); err != nil {
		return err
	}
	n, err := conn.Wait(ctx, r.minAcks, r.timeout).Result()
	if err != nil {
		return err
	}
	if int(n) < r.minAcks {
		return fmt.Errorf("%w: %d of %d", ErrNotReplicated, n, r.minAcks)
	}
	return nil
}

// runScript runs a write script on its first key's master (see
// [Redis.write]).
func (r *Redis) runScript(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	var cmd *redis.Cmd
	err := r.write(ctx, keys[0], func(c redis.Cmdable) error {
		cmd = s.Run(ctx, c, keys, args...)
		return cmd.Err()
	})
	if cmd == nil {
		cmd = redis.NewCmd(ctx)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		cmd.SetErr(err)
	}
	return cmd
}

// readBreaker is the breaker guarding reads of key: on a Cluster one per
// master node, so that a dead master fails only its own slots fast and a
// promoted replica starts with a closed breaker; else the store's one.
func (r *Redis) readBreaker(ctx context.Context, key string) *breaker {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return &r.reads
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return &r.reads
	}
	addr := node.Options().Addr
	if b, ok := r.nodeReads.Load(addr); ok {
		return b.(*breaker)
	}
	b, _ := r.nodeReads.LoadOrStore(addr, &breaker{now: r.reads.now})
	return b.(*breaker)
}

// resetBreakers closes every read breaker.
func (r *Redis) resetBreakers() {
	r.reads.reset()
	r.nodeReads.Range(func(_, b any) bool { b.(*breaker).reset(); return true })
}

// Put implements [Store]. Two scripts, each atomic in its Cluster slot:
// the first claims the id for the patient in the id index (refused when
// another patient holds it), the second checks the if-version and the
// patient's record count against the record it replaces and writes it.
func (r *Redis) Put(ctx context.Context, c *fhirconsent.Consent, opts ...PutOption) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	o := putOpts(opts)
	if err := r.limits.check(c, r.now()); err != nil {
		return Record{}, fmt.Errorf("put consent: %w", err)
	}
	id := c.ID
	if id == "" {
		var err error
		if id, err = newID(); err != nil {
			return Record{}, err
		}
	}
	patient := c.Patient
	stored := c
	if id != c.ID {
		stored = c.WithID(id, "")
	}
	payload, err := r.aead.seal(stored.Raw, additional(patient, id))
	if err != nil {
		return Record{}, fmt.Errorf("put consent %q: %w", id, err)
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	defer r.invalidatePatient(patient)

	// The id index lives in another slot: it is claimed first, so a record
	// is always reachable by id once it exists, and settled after.
	token, err := newID()
	if err != nil {
		return Record{}, err
	}
	idKey := r.consentIDKey(id)
	claimed, err := r.runScript(ctx, claimScript, []string{idKey}, patient, token).Int()
	if err != nil {
		return Record{}, r.unavailable("put consent", err)
	}
	if claimed == 0 {
		return Record{}, fmt.Errorf("put consent %q: %w", id, ErrOtherPatient)
	}
	maxRecords := max(r.limits.MaxPerPatient, 0)
	v, err := r.runScript(ctx, putScript, []string{r.versionKey(patient), r.consentsKey(patient)},
		id, payload, o.ifVersion, maxRecords, r.channel, r.patientMsg(patient)).Int64()
	if err != nil {
		// Whether the record was written is unknown: the claim stays.
		return Record{}, r.unavailable("put consent", err)
	}
	if claimed == 1 {
		// Make the claim final, or release it when the write was refused.
		// Either fails harmlessly: a claim left tentative still names the
		// patient.
		final := patient
		if v < 0 {
			final = ""
		}
		_ = settleScript.Run(ctx, r.client, []string{idKey}, patient+"|"+token, final).Err()
	}
	switch v {
	case -1:
		return Record{}, fmt.Errorf("put consent %q: %w", id, ErrVersionMismatch)
	case -2:
		return Record{}, fmt.Errorf("put consent %q: %w: patient has %d consents", id, ErrLimit, maxRecords)
	}
	vs := strconv.FormatInt(v, 10)
	return Record{Consent: stored.WithID(id, vs), Version: vs}, nil
}

// idPatient reads the id index: the patient the id belongs to (a
// tentative claim's token dropped).
func (r *Redis) idPatient(ctx context.Context, id string) (string, error) {
	v, err := r.client.Get(ctx, r.consentIDKey(id)).Result()
	if err != nil {
		return "", err
	}
	patient, _, _ := strings.Cut(v, "|")
	return patient, nil
}

// Get implements [Store].
func (r *Redis) Get(ctx context.Context, id string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	patient, err := r.idPatient(ctx, id)
	if errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("get %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, r.unavailable("get consent", err)
	}
	val, err := r.client.HGet(ctx, r.consentsKey(patient), id).Result()
	if errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("get %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, r.unavailable("get consent", err)
	}
	return r.decodeRecord(patient, id, val)
}

// List implements [Store].
func (r *Redis) List(ctx context.Context, patient string) ([]Record, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	patient = fhirconsent.CanonicalReference(patient)
	ctx, cancel := r.call(ctx)
	defer cancel()
	var (
		ver  *redis.StringCmd
		recs *redis.MapStringStringCmd
	)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ver = p.Get(ctx, r.versionKey(patient))
		recs = p.HGetAll(ctx, r.consentsKey(patient))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", r.unavailable("list consents", err)
	}
	out := make([]Record, 0, len(recs.Val()))
	for id, val := range recs.Val() {
		rec, err := r.decodeRecord(patient, id, val)
		if err != nil {
			return nil, "", err
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Consent.ID, b.Consent.ID) })
	return out, versionOf(ver), nil
}

// Revoke implements [Store].
func (r *Redis) Revoke(ctx context.Context, id string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	ctx, cancel := r.call(ctx)
	defer cancel()
	patient, err := r.idPatient(ctx, id)
	if errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("revoke %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, r.unavailable("revoke consent", err)
	}
	defer r.invalidatePatient(patient)
	val, err := r.runScript(ctx, revokeScript, []string{r.versionKey(patient), r.consentsKey(patient), r.revokedAtKey(patient)},
		id, r.channel, r.patientMsg(patient), r.now().UnixMilli()).Text()
	if errors.Is(err, redis.Nil) {
		return Record{}, fmt.Errorf("revoke %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, r.unavailable("revoke consent", err)
	}
	return r.decodeRecord(patient, id, val)
}

// ForPatient implements [Store]. A cached entry is served while the
// invalidation subscription is live; otherwise it reads Redis in one round
// trip and compiles the patient's consents.
func (r *Redis) ForPatient(ctx context.Context, patient string) (Set, error) {
	if err := ctx.Err(); err != nil {
		return Set{}, err
	}
	e, err := r.patient(ctx, patient)
	if err != nil {
		return Set{}, err
	}
	return e.set, nil
}

// patientEntry is what the cache keeps per patient: the compiled consents
// and the break-glass grants, read together in one round trip.
type patientEntry struct {
	set     Set
	grants  []access.Grant
	expires time.Time
}

func (e *patientEntry) expiry() time.Time { return e.expires }

// patient returns the patient's entry from the cache or Redis.
func (r *Redis) patient(ctx context.Context, patient string) (*patientEntry, error) {
	patient = fhirconsent.CanonicalReference(patient)
	if r.trusted.Load() {
		if e, ok := r.patients.get(patient); ok {
			r.hits.Add(1)
			return e, nil
		}
	}
	r.misses.Add(1)
	gen := r.patients.generation(patient)
	e, err := r.loadPatient(ctx, patient)
	if err != nil {
		return nil, err
	}
	r.patients.add(patient, e, gen)
	return e, nil
}

// loadPatient reads a patient's version, consents and grants in one
// MULTI/EXEC round trip and compiles the consents.
func (r *Redis) loadPatient(ctx context.Context, patient string) (*patientEntry, error) {
	reads := r.readBreaker(ctx, r.versionKey(patient))
	if !reads.allow() {
		return nil, r.unavailable("consents of the patient", ErrBreakerOpen)
	}
	parent := ctx
	ctx, cancel := r.call(ctx)
	defer cancel()
	var (
		ver            *redis.StringCmd
		recs, grantsOf *redis.MapStringStringCmd
	)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ver = p.Get(ctx, r.versionKey(patient))
		recs = p.HGetAll(ctx, r.consentsKey(patient))
		grantsOf = p.HGetAll(ctx, r.grantsKey(patient))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		reads.done(parent, err)
		return nil, r.unavailable("consents of the patient", err)
	}
	reads.done(parent, nil)
	e := &patientEntry{set: Set{Version: versionOf(ver)}, expires: time.Now().Add(r.cacheTTL)}
	for id, val := range recs.Val() {
		rec, err := r.decodeRecord(patient, id, val)
		if err != nil {
			return nil, err
		}
		if !rec.Revoked {
			e.set.Consents = append(e.set.Consents, rec.Consent)
		}
	}
	slices.SortFunc(e.set.Consents, func(a, b *fhirconsent.Consent) int { return strings.Compare(a.ID, b.ID) })
	if e.grants, err = r.decodeGrants(patient, grantsOf.Val()); err != nil {
		return nil, err
	}
	return e, nil
}

func versionOf(cmd *redis.StringCmd) string {
	if v := cmd.Val(); v != "" {
		return v
	}
	return "0"
}

// cutFields splits a stored value "A|B|PAYLOAD", the layout of every
// consent, grant and agreement record (the payload may hold "|" itself).
func cutFields(val string) (a, b, payload string, ok bool) {
	a, rest, ok1 := strings.Cut(val, "|")
	b, payload, ok2 := strings.Cut(rest, "|")
	return a, b, payload, ok1 && ok2
}

// splitRecord splits "VERSION|REVOKED|PAYLOAD".
func splitRecord(val string) (version string, revoked bool, payload string, ok bool) {
	version, flag, payload, ok := cutFields(val)
	if !ok || version == "" || (flag != "0" && flag != "1") {
		return "", false, "", false
	}
	return version, flag == "1", payload, true
}

// decodeRecord opens and compiles one stored record.
func (r *Redis) decodeRecord(patient, id, val string) (Record, error) {
	version, revoked, payload, ok := splitRecord(val)
	if !ok {
		return Record{}, fmt.Errorf("consent %q: malformed record in redis: %w", id, ErrUnavailable)
	}
	raw, err := r.aead.open([]byte(payload), additional(patient, id))
	if err != nil {
		return Record{}, fmt.Errorf("consent %q: %w", id, err)
	}
	c, err := fhirconsent.Parse(raw)
	if err != nil {
		return Record{}, fmt.Errorf("consent %q: stored resource does not parse: %w", id, err)
	}
	return Record{Consent: c.WithID(id, version), Version: version, Revoked: revoked}, nil
}

func (r *Redis) invalidatePatient(patient string) { r.patients.invalidate(patient) }
