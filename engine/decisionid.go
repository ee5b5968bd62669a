package engine

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// decisionIDs generates decision ids: UUIDv7 (RFC 9562) strings, a 48-bit
// Unix millisecond timestamp, 12 bits of sub-millisecond time kept
// strictly increasing within the engine (method 3 of RFC 9562 §6.2, as
// github.com/google/uuid does), and 62 random bits. The random bits come
// from the runtime's per-thread ChaCha8 generator (math/rand/v2), seeded
// from the operating system: ids are unique and unordered beyond their
// time, without the system call, the lock and the extra allocation of
// uuid.NewV7. They identify decisions; they are not secrets.
type decisionIDs struct {
	last atomic.Int64 // ms<<12 | sub-ms sequence of the last id
	now  func() time.Time
}

func (g *decisionIDs) next() string {
	nano := g.now().UnixNano()
	milli := nano / 1e6
	// Sub-millisecond precision in 12 bits (2^20 ns ≈ 1.05 ms / 4096).
	t := milli<<12 + (nano-milli*1e6)>>8
	for {
		last := g.last.Load()
		if t <= last {
			t = last + 1
		}
		if g.last.CompareAndSwap(last, t) {
			break
		}
	}
	var u [16]byte
	binary.BigEndian.PutUint64(u[0:8], uint64(t>>12)<<16|0x7000|uint64(t&0xfff))
	binary.BigEndian.PutUint64(u[8:16], rand.Uint64()&0x3fffffffffffffff|0x8000000000000000)
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
