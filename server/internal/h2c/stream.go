package h2c

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// stream is one request and its answer.
type stream struct {
	c      *conn
	id     uint32
	req    *http.Request
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
	rw     responseWriter
	body   requestBody
	// inline: run by the frame-reading goroutine (see
	// conn.inlineCandidate); handedOff: it then started another one.
	inline, handedOff bool
	unary             bool        // Server.Inline says so: started once its body is whole
	started           atomic.Bool // its handler began (see conn.idleCheck)

	// Guarded by c.mu.
	sendWindow int64
	reset      bool // RST_STREAM sent or received
	ended      bool // the answer's END_STREAM was queued

	// The request body, guarded by bmu.
	bmu          sync.Mutex
	buf          []byte
	off          int
	eof          bool // END_STREAM received
	bodyClosed   bool // the handler closed the body or returned
	wake         chan struct{}
	recvAvail    int64 // bytes the client may still send on the stream
	unreturned   int64 // bytes read, not yet returned to the stream's window
	declared     int64 // content-length, or -1
	received     int64
	remoteClosed bool
}

func newStream(c *conn, id uint32, req *http.Request, endStream bool) *stream {
	st := &stream{
		c:         c,
		id:        id,
		start:     time.Now(),
		recvAvail: int64(c.srv.StreamWindow),
		declared:  req.ContentLength,
	}
	st.unary = c.srv.Inline != nil && c.srv.Inline(req)
	st.ctx, st.cancel = context.WithCancel(c.ctx)
	st.rw.st = st
	st.body.st = st
	c.mu.Lock()
	st.sendWindow = c.peerInitWindow
	c.mu.Unlock()
	if endStream {
		st.eof, st.remoteClosed = true, true
		req.Body = http.NoBody
	} else {
		req.Body = &st.body
	}
	st.req = req.WithContext(st.ctx)
	return st
}

// onData takes a DATA frame's data (flow controlled as n bytes, its
// padding included) or, with n 0, the end of the request.
func (st *stream) onData(data []byte, n int64, end bool) error {
	c := st.c
	st.bmu.Lock()
	code := errCode(0)
	switch {
	case st.remoteClosed:
		code = codeStreamClosed
	case n > st.recvAvail:
		code = codeFlowControl
	}
	if code != 0 {
		st.bmu.Unlock()
		c.returnConn(n)
		c.reset(st, code)
		return nil
	}
	st.recvAvail -= n
	st.received += int64(len(data))
	if st.declared >= 0 && (st.received > st.declared || end && st.received != st.declared) {
		st.bmu.Unlock()
		c.returnConn(n)
		c.reset(st, codeProtocol)
		return nil
	}
	drop := n - int64(len(data)) // padding
	if st.bodyClosed {
		drop = n
	} else {
		st.buf = append(st.buf, data...)
	}
	st.unreturned += drop
	if end {
		st.eof, st.remoteClosed = true, true
	}
	if st.wake != nil {
		select {
		case st.wake <- struct{}{}:
		default:
		}
	}
	st.bmu.Unlock()
	c.returnConn(drop)
	return nil
}

// run serves the stream's request and ends the stream.
func (st *stream) run() {
	st.started.Store(true)
	defer st.done()
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				buf := make([]byte, 8<<10)
				buf = buf[:runtime.Stack(buf, false)]
				st.c.srv.logf(slog.LevelError, "http2 handler panic", slog.Any("panic", v), slog.String("stack", string(buf)))
			}
			st.c.reset(st, codeInternal)
		}
	}()
	if st.ctx.Err() != nil {
		return // reset before it started
	}
	st.c.srv.Handler.ServeHTTP(&st.rw, st.req)
	st.rw.finish()
}

// done releases the stream after its handler returned.
func (st *stream) done() {
	c := st.c
	st.bmu.Lock()
	st.bodyClosed = true
	unread := int64(len(st.buf)-st.off) + st.unreturned
	st.buf, st.off, st.unreturned = nil, 0, 0
	remoteOpen := !st.remoteClosed
	st.bmu.Unlock()
	c.returnConn(unread)
	c.mu.Lock()
	delete(c.streams, st.id)
	if !st.reset && !st.ended {
		c.resetLocked(st, codeInternal) // the answer did not end (a panic)
	} else if remoteOpen && !st.reset {
		// The answer is complete; the client need not send the rest.
		c.queueRSTLocked(st.id, codeNo)
		st.reset = true
	}
	_ = c.flushLocked()
	last := c.goAwaySent && len(c.streams) == 0
	c.mu.Unlock()
	st.cancel()
	c.lastActive.Store(time.Now().UnixNano())
	if last {
		c.close()
	}
}

// requestBody is a stream's request body.
type requestBody struct{ st *stream }

var (
	errBodyClosed  = errors.New("h2c: read on closed body")
	errReadTimeout = errors.New("h2c: request body not received in time")
)

func (b *requestBody) Read(p []byte) (int, error) {
	st := b.st
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	st.bmu.Lock()
	for {
		if st.bodyClosed {
			st.bmu.Unlock()
			return 0, errBodyClosed
		}
		if st.off < len(st.buf) {
			n := copy(p, st.buf[st.off:])
			st.off += n
			if st.off == len(st.buf) {
				st.buf, st.off = st.buf[:0], 0
			}
			st.unreturned += int64(n)
			var inc int64
			if !st.eof && st.unreturned >= int64(st.c.srv.StreamWindow)/2 {
				inc, st.unreturned = st.unreturned, 0
				st.recvAvail += inc
			}
			st.bmu.Unlock()
			if inc > 0 {
				st.c.mu.Lock()
				if !st.reset {
					st.c.queueWindowUpdateLocked(st.id, uint32(inc))
				}
				st.c.mu.Unlock()
			}
			st.c.returnConn(int64(n)) // flushes when it sends anything
			return n, nil
		}
		if st.eof {
			st.bmu.Unlock()
			return 0, io.EOF
		}
		if st.wake == nil {
			st.wake = make(chan struct{}, 1)
		}
		wake := st.wake
		st.bmu.Unlock()
		// The client may wait for what the handler flushed before it
		// sends more.
		st.c.mu.Lock()
		if st.c.flushArmed {
			_ = st.c.flushLocked()
		}
		st.c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(st.start.Add(st.c.srv.ReadTimeout)))
		}
		select {
		case <-wake:
		case <-st.ctx.Done():
			return 0, st.ctx.Err()
		case <-timer.C:
			st.c.reset(st, codeCancel)
			return 0, errReadTimeout
		}
		st.bmu.Lock()
	}
}

func (b *requestBody) Close() error {
	st := b.st
	st.bmu.Lock()
	if st.bodyClosed {
		st.bmu.Unlock()
		return nil
	}
	st.bodyClosed = true
	unread := int64(len(st.buf) - st.off)
	st.buf, st.off = nil, 0
	st.unreturned += unread
	st.bmu.Unlock()
	return nil
}

// responseWriter is a stream's http.ResponseWriter. The answer is held
// until the handler flushes or returns (or holds more than
// writeThreshold bytes), so a unary answer is queued as one piece:
// HEADERS, DATA and the trailers.
type responseWriter struct {
	st          *stream
	header      http.Header
	status      int
	wroteHeader bool // WriteHeader was called: the header fields are taken
	sentHeader  bool // HEADERS was queued
	fields      []hpack.HeaderField
	declared    []string // trailer names declared in the Trailer header
	out         []byte
	head        bool
}

// writeThreshold is how much of an unflushed answer is held.
const writeThreshold = 32 << 10

func (rw *responseWriter) Header() http.Header {
	if rw.header == nil {
		rw.header = make(http.Header, 4)
	}
	return rw.header
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h2c: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		return // informational answers are not sent
	}
	rw.wroteHeader = true
	rw.status = code
	rw.head = rw.st.req.Method == http.MethodHead
	status := "200"
	if code != 200 {
		status = strconv.Itoa(code)
	}
	rw.fields = append(rw.fields[:0], hpack.HeaderField{Name: ":status", Value: status})
	for k, vv := range rw.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		switch k {
		case "Trailer":
			for _, v := range vv {
				for name := range strings.SplitSeq(v, ",") {
					if name = strings.TrimSpace(name); name != "" {
						rw.declared = append(rw.declared, http.CanonicalHeaderKey(name))
					}
				}
			}
			continue
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			continue
		}
		name := lowerName(k)
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				rw.fields = append(rw.fields, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		if rw.header.Get("Content-Type") == "" && len(p) > 0 {
			rw.Header().Set("Content-Type", http.DetectContentType(p))
		}
		rw.WriteHeader(http.StatusOK)
	}
	if rw.head || rw.status == http.StatusNoContent || rw.status == http.StatusNotModified {
		return len(p), nil
	}
	rw.out = append(rw.out, p...)
	if len(rw.out) >= writeThreshold {
		if err := rw.send(false, false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush sends what the handler wrote so far.
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError is Flush with its error (http.ResponseController uses it).
func (rw *responseWriter) FlushError() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.sentHeader && len(rw.out) == 0 {
		return nil
	}
	return rw.send(false, true)
}

// finish ends the answer after the handler returned.
func (rw *responseWriter) finish() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	_ = rw.send(true, false)
}

// trailers are the trailer fields: those the handler set with
// http.TrailerPrefix and those it declared in the Trailer header.
func (rw *responseWriter) trailers() []hpack.HeaderField {
	var t []hpack.HeaderField
	for k, vv := range rw.header {
		if !strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := lowerName(k[len(http.TrailerPrefix):])
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				t = append(t, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	for _, k := range rw.declared {
		name := lowerName(k)
		for _, v := range rw.header[k] {
			if httpguts.ValidHeaderFieldValue(v) {
				t = append(t, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	return t
}

// send queues the header fields (once), the body held and, with end, the
// trailers, the last frame ending the stream; then writes them, or with
// deferred has them written soon (see conn.deferFlushLocked).
func (rw *responseWriter) send(end, deferred bool) error {
	st, c := rw.st, rw.st.c
	var trailers []hpack.HeaderField
	if end {
		trailers = rw.trailers()
		if !rw.sentHeader && len(trailers) == 0 && rw.header.Get("Content-Length") == "" && !rw.head {
			rw.fields = append(rw.fields, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(rw.out))})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.reset || c.closed || st.ended {
		return errStreamClosed
	}
	headersEnded := false
	if !rw.sentHeader {
		headersEnded = end && len(rw.out) == 0 && len(trailers) == 0
		c.writeHeadersLocked(st.id, rw.fields, headersEnded)
		rw.sentHeader = true
	}
	data := rw.out
	for len(data) > 0 {
		n := int64(min(len(data), c.peerMaxFrame))
		n = min(n, c.sendConn, st.sendWindow)
		if n <= 0 {
			if len(c.wbuf) > 0 && !c.flushing && c.werr == nil {
				// What is queued may be what the peer waits for. mu is
				// released while it is written: look at the windows again.
				_ = c.flushLocked()
				continue
			}
			if st.reset || c.closed || c.werr != nil {
				return errStreamClosed
			}
			st.handOff() // the window grows by frames someone must read
			c.flow.Wait()
			continue
		}
		var flags uint8
		if end && int(n) == len(data) && len(trailers) == 0 {
			flags = flagEndStream
		}
		c.queueLocked(frameData, flags, st.id, data[:n])
		c.sendConn -= n
		st.sendWindow -= n
		data = data[n:]
	}
	ended := end && len(rw.out) > 0 && len(trailers) == 0 // the last DATA ended it
	rw.out = rw.out[:0]
	if end {
		switch {
		case len(trailers) > 0:
			c.writeHeadersLocked(st.id, trailers, true)
		case !ended && !headersEnded:
			c.queueLocked(frameData, flagEndStream, st.id, nil)
		}
		st.ended = true
	}
	if deferred {
		c.deferFlushLocked()
		return nil
	}
	return c.flushLocked()
}

// lowerName is a canonical header name in lower case.
func lowerName(k string) string {
	switch k {
	case "Content-Type":
		return "content-type"
	case "Grpc-Status":
		return "grpc-status"
	case "Grpc-Message":
		return "grpc-message"
	case "Grpc-Status-Details-Bin":
		return "grpc-status-details-bin"
	case "Grpc-Accept-Encoding":
		return "grpc-accept-encoding"
	case "Grpc-Encoding":
		return "grpc-encoding"
	case "Content-Length":
		return "content-length"
	case "Content-Encoding":
		return "content-encoding"
	}
	return strings.ToLower(k)
}
