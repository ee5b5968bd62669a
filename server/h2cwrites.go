package server

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// http2Preface opens every HTTP/2 connection from the client.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Write coalescing on cleartext HTTP/2 connections.
//
// Go's HTTP/2 server writes a gRPC answer as three frames, HEADERS, DATA
// and the trailers (HEADERS with END_STREAM), and flushes each to the
// socket with a write of its own: the handler waits for each frame to be
// written before it hands over the next. Three system calls per answer,
// where an HTTP/1.1 answer takes one, were ≈20% of the server's CPU per
// ext_authz Check. h2cWrites holds the bytes of HEADERS, DATA and
// CONTINUATION frames that do not end their stream and writes them with
// the next write that carries anything else (a frame that ends a stream,
// SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY): a unary answer is
// then one write. Held bytes are written after holdFor at the latest, so
// a streaming answer (a health Watch) is late by at most that; nothing is
// reordered or dropped. TLS connections are left alone (their writes are
// records, not frames), and so is HTTP/1.1.
type h2cWrites struct {
	on atomic.Bool

	mu      sync.Mutex
	conn    net.Conn
	pending []byte
	timer   *time.Timer
	armed   bool
	closed  bool
	err     error // of a delayed write: returned by the next one

	// The frame being written, across writes.
	hdr       [9]byte
	hdrN      int
	left      int  // payload bytes still to come
	cur       bool // the frame may be held
	blockHold bool // the header block (HEADERS + CONTINUATION) may be held
}

const (
	holdFor = time.Millisecond
	holdMax = 64 << 10

	frameData         = 0x0
	frameHeaders      = 0x1
	frameContinuation = 0x9
	flagEndStream     = 0x1
)

func (w *h2cWrites) start(c net.Conn) {
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	w.on.Store(true)
}

func (w *h2cWrites) write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	hold := w.scan(p) && len(w.pending)+len(p) <= holdMax && !w.closed
	if hold {
		w.pending = append(w.pending, p...)
		if !w.armed {
			if w.timer == nil {
				w.timer = time.AfterFunc(holdFor, w.flushLater)
			} else {
				w.timer.Reset(holdFor)
			}
			w.armed = true
		}
		return len(p), nil
	}
	if len(w.pending) == 0 {
		return w.conn.Write(p)
	}
	held := len(w.pending)
	w.pending = append(w.pending, p...)
	n, err := w.flush()
	if err != nil {
		return max(0, n-held), err
	}
	return len(p), nil
}

// flush writes the pending bytes; w.mu is held.
func (w *h2cWrites) flush() (int, error) {
	if w.armed {
		w.timer.Stop()
		w.armed = false
	}
	n, err := w.conn.Write(w.pending)
	w.pending = w.pending[:0]
	if err != nil {
		w.err = err
	}
	return n, err
}

func (w *h2cWrites) flushLater() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if len(w.pending) > 0 && w.err == nil && !w.closed {
		_, _ = w.flush()
	}
}

// close writes what is held (within a short deadline: the peer may be
// gone) before the connection closes. A write in progress (blocked on a
// peer that does not read) is not waited for: closing the connection is
// what ends it.
func (w *h2cWrites) close() {
	if !w.mu.TryLock() {
		return
	}
	defer w.mu.Unlock()
	if len(w.pending) > 0 && w.err == nil && !w.closed {
		_ = w.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = w.flush()
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// scan follows the frames in p (which may start or end inside one) and
// reports whether every byte of p belongs to a frame that may be held.
func (w *h2cWrites) scan(p []byte) bool {
	hold := true
	for len(p) > 0 {
		if w.left > 0 {
			k := min(w.left, len(p))
			w.left -= k
			p = p[k:]
			hold = hold && w.cur
			continue
		}
		k := copy(w.hdr[w.hdrN:], p)
		w.hdrN += k
		p = p[k:]
		if w.hdrN < len(w.hdr) {
			return false // a frame header cut short: not known yet
		}
		w.hdrN = 0
		w.left = int(w.hdr[0])<<16 | int(w.hdr[1])<<8 | int(w.hdr[2])
		typ, flags := w.hdr[3], w.hdr[4]
		switch typ {
		case frameHeaders:
			w.blockHold = flags&flagEndStream == 0
			w.cur = w.blockHold
		case frameContinuation:
			w.cur = w.blockHold
		case frameData:
			w.cur = flags&flagEndStream == 0
		default:
			w.cur = false
		}
		hold = hold && w.cur
	}
	return hold
}
