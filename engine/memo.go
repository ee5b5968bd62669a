package engine

import (
	"hash/maphash"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

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
type memo struct {
	seed   maphash.Seed
	shards [memoShards]memoShard
	limit  int // per shard and generation
}

const memoShards = 16

type memoShard struct {
	mu        sync.RWMutex
	cur, prev map[string]*outcome
}

func newMemo(size int) *memo {
	if size <= 0 {
		return nil
	}
	m := &memo{seed: maphash.MakeSeed(), limit: max(1, size/memoShards)}
	for i := range m.shards {
		m.shards[i].cur = make(map[string]*outcome)
	}
	return m
}

func (m *memo) shard(key []byte) *memoShard {
	return &m.shards[maphash.Bytes(m.seed, key)%memoShards]
}

func (m *memo) get(key []byte) (*outcome, bool) {
	s := m.shard(key)
	s.mu.RLock()
	o, ok := s.cur[string(key)]
	if !ok && s.prev != nil {
		o, ok = s.prev[string(key)]
		if ok {
			s.mu.RUnlock()
			m.put(key, o)
			return o, true
		}
	}
	s.mu.RUnlock()
	return o, ok
}

func (m *memo) put(key []byte, o *outcome) {
	s := m.shard(key)
	s.mu.Lock()
	if len(s.cur) >= m.limit {
		s.prev, s.cur = s.cur, make(map[string]*outcome, m.limit)
	}
	s.cur[string(key)] = o
	s.mu.Unlock()
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

var keyMarshal = proto.MarshalOptions{Deterministic: true}

// memoKey appends the memo key of the facts to buf.
func memoKey(buf []byte, f *facts) ([]byte, error) {
	req := f.req
	c := req.GetContext()
	view := &chaperonev1.CheckRequest{
		Subject:      req.GetSubject(),
		Action:       req.GetAction(),
		Resource:     req.GetResource(),
		PurposeOfUse: req.GetPurposeOfUse(),
	}
	if c != nil {
		view.Context = &chaperonev1.Context{
			BreakGlassReason: c.GetBreakGlassReason(),
			Ip:               c.GetIp(),
			NetworkZone:      c.GetNetworkZone(),
			DeviceTrust:      c.GetDeviceTrust(),
		}
	}
	buf, err := keyMarshal.MarshalAppend(buf, view)
	if err != nil {
		return nil, err
	}
	ms := f.at.UnixMilli()
	buf = append(buf, 0, byte(ms), byte(ms>>8), byte(ms>>16), byte(ms>>24), byte(ms>>32), byte(ms>>40), byte(ms>>48), byte(ms>>56))
	buf = append(buf, f.consent...)
	return appendFactsKey(buf, f), nil
}

// truncateTime rounds t down to the bundle's time resolution.
func truncateTime(t time.Time, res time.Duration) time.Time {
	if res <= 0 {
		return t
	}
	return t.Truncate(res)
}
