package engine

import (
	"encoding/binary"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// outcome is what the policy layers concluded for one set of facts. It is
// immutable once stored in a memo.
type outcome struct {
	permits []permitHit
	denies  []denyHit
	obl     obligations
}

// memo remembers the policy layers' outcome per set of facts, for one
// bundle. The key is every input the layers can see: the request as
// policies see it (without the correlation id), the decision time at the
// bundle's resolution and the consent decision. A new bundle gets a new
// memo, so a swap can never serve a stale outcome. Outcomes of failed
// evaluations are never stored.
//
// It is sharded, and each shard keeps two generations: when the current
// one is full it becomes the previous one, and entries found there move
// back to the current one. The memo thus holds at most 2×size entries and
// keeps what is used.
//
// An outcome is stored the second time its key is put, not the first: a
// doorkeeper (per shard, one hash per slot) remembers keys seen once.
// Traffic where most requests never repeat (every read of another
// resource) then costs the memo a hash and a slot write instead of an
// entry, an allocation and garbage for the collector to scan.
type memo[V any] struct {
	seed   maphash.Seed
	shards [memoShards]memoShard[V]
	limit  int // per shard and generation
}

const memoShards = 16

type memoShard[V any] struct {
	mu        sync.RWMutex
	cur, prev map[string]V
	seen      []uint64 // doorkeeper: hashes of keys put once
}

func newMemo[V any](size int) *memo[V] {
	if size <= 0 {
		return nil
	}
	m := &memo[V]{seed: maphash.MakeSeed(), limit: max(1, size/memoShards)}
	for i := range m.shards {
		m.shards[i].cur = make(map[string]V)
		m.shards[i].seen = make([]uint64, m.limit)
	}
	return m
}

func (m *memo[V]) shard(key []byte) (*memoShard[V], uint64) {
	h := maphash.Bytes(m.seed, key)
	return &m.shards[h%memoShards], h
}

func (m *memo[V]) get(key []byte) (V, bool) {
	s, _ := m.shard(key)
	s.mu.RLock()
	o, ok := s.cur[string(key)]
	if !ok && s.prev != nil {
		o, ok = s.prev[string(key)]
		if ok {
			s.mu.RUnlock()
			m.store(s, key, o)
			return o, true
		}
	}
	s.mu.RUnlock()
	return o, ok
}

// put stores o under key if key was put before (see the doorkeeper).
func (m *memo[V]) put(key []byte, o V) {
	s, h := m.shard(key)
	slot := &s.seen[(h/memoShards)%uint64(len(s.seen))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if *slot != h {
		*slot = h // first time: remember the key only
		return
	}
	m.storeLocked(s, key, o)
}

func (m *memo[V]) store(s *memoShard[V], key []byte, o V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.storeLocked(s, key, o)
}

func (m *memo[V]) storeLocked(s *memoShard[V], key []byte, o V) {
	if len(s.cur) >= m.limit {
		s.prev, s.cur = s.cur, make(map[string]V, m.limit)
	}
	s.cur[string(key)] = o
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// memoKey appends the memo key of the facts to buf: every field of the
// request a policy can see (all of subject, action, resource and purpose,
// the context without time and correlation id), the decision time at the
// bundle's resolution, the consent decision and the access facts. Strings
// are length-prefixed and lists counted, so distinct inputs never share a
// key. TestMemoKeyCoversEveryField fails when a field is added to the API
// and not here.
func memoKey(buf []byte, f *facts) ([]byte, error) {
	req := f.req
	buf = appendSubjectKey(buf, req.GetSubject())

	buf = appendStr(buf, req.GetAction())

	r := req.GetResource()
	buf = appendStr(buf, r.GetType())
	buf = appendStr(buf, r.GetId())
	buf = appendStr(buf, r.GetPatient())
	buf = appendCodings(buf, r.GetSecurityLabels())
	buf = appendCodings(buf, r.GetCodes())
	buf = appendCodings(buf, r.GetCategories())
	buf = appendStr(buf, r.GetOrganization())
	buf = appendStr(buf, r.GetAuthor())
	if d := r.GetDate(); d != nil {
		buf = append(buf, 1)
		buf = binary.AppendVarint(buf, d.GetSeconds())
		buf = binary.AppendVarint(buf, int64(d.GetNanos()))
	} else {
		buf = append(buf, 0)
	}
	buf = appendStrs(buf, r.GetProfiles())

	buf = appendStr(buf, req.GetPurposeOfUse())

	c := req.GetContext()
	buf = appendStr(buf, c.GetBreakGlassReason())
	buf = appendStr(buf, c.GetIp())
	buf = appendStr(buf, c.GetNetworkZone())
	buf = appendStr(buf, c.GetDeviceTrust())
	buf = appendStr(buf, c.GetPhase())

	buf = binary.AppendVarint(buf, f.at.UnixMilli())
	buf = appendStr(buf, string(f.consent))
	buf = strconv.AppendBool(buf, f.consentNamesSubject)
	buf = strconv.AppendBool(buf, f.consentNamesRecipient)
	buf = strconv.AppendBool(buf, f.consentRestrictsRecipient)
	d := &f.deciding
	buf = appendStr(buf, d.ID)
	buf = appendStr(buf, d.Provision)
	buf = appendStr(buf, d.Scope)
	buf = appendStrs(buf, d.Categories)
	buf = appendStrs(buf, d.Purposes)
	return appendFactsKey(buf, f), nil
}

// appendSubjectKey appends every field of the subject.
func appendSubjectKey(buf []byte, s *chaperonev1.Subject) []byte {
	buf = appendStr(buf, s.GetId())
	buf = appendStr(buf, s.GetKind())
	buf = appendIdentifiers(buf, s.GetIdentifiers())
	buf = appendStrs(buf, s.GetRoles())
	buf = appendStr(buf, s.GetOrganization())
	buf = appendIdentifiers(buf, s.GetOrganizationIdentifiers())
	buf = appendStrs(buf, s.GetScopes())
	buf = appendStr(buf, s.GetClientId())
	return appendStr(buf, s.GetLaunchPatient())
}

func appendStr(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendStrs(buf []byte, ss []string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(ss)))
	for _, s := range ss {
		buf = appendStr(buf, s)
	}
	return buf
}

func appendCodings(buf []byte, cs []*chaperonev1.Coding) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(cs)))
	for _, c := range cs {
		buf = appendStr(buf, c.GetSystem())
		buf = appendStr(buf, c.GetCode())
	}
	return buf
}

func appendIdentifiers(buf []byte, ids []*chaperonev1.Identifier) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(ids)))
	for _, id := range ids {
		buf = appendStr(buf, id.GetSystem())
		buf = appendStr(buf, id.GetValue())
	}
	return buf
}

// truncateTime rounds t down to the bundle's time resolution.
func truncateTime(t time.Time, res time.Duration) time.Time {
	if res <= 0 {
		return t
	}
	return t.Truncate(res)
}
