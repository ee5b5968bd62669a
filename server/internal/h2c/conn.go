package h2c

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// conn is one HTTP/2 connection. One goroutine (serve) reads its frames;
// handlers write their answers themselves, under mu, and whichever
// goroutine finds no write in progress writes everything queued (see
// flushLocked).
type conn struct {
	srv        *Server
	nc         net.Conn
	fr         frameReader
	ctx        context.Context
	cancel     context.CancelFunc
	remoteAddr string

	// Read by the serve goroutine only.
	hdec        *hpack.Decoder
	hb          headerBlock
	contStream  uint32 // stream of a header block awaiting CONTINUATION (0: none)
	contEnd     bool   // that block's HEADERS had END_STREAM
	blockBytes  int    // bytes of the header block so far
	pending     []*stream
	sawSettings bool
	inlineOK    bool       // see inlineCandidate
	readerErr   chan error // the error that ended a handed-off frame reading
	canon       map[string]string

	maxClientID atomic.Uint32 // highest stream the client opened
	recvConn    atomic.Int64  // request bytes the client may still send on the connection
	lastActive  atomic.Int64  // unix nanoseconds a stream last ended
	idleTimer   *time.Timer

	mu             sync.Mutex
	flow           sync.Cond // on mu: a send window grew, a stream was reset, or the connection closed
	streams        map[uint32]*stream
	wbuf, spare    []byte
	flushing       bool
	werr           error
	closed         bool
	henc           *hpack.Encoder
	hbuf           bytes.Buffer
	sendConn       int64 // bytes the server may still send on the connection
	peerInitWindow int64
	peerMaxFrame   int
	goAwaySent     bool
	connConsumed   int64 // request bytes handlers read or dropped, not yet returned by WINDOW_UPDATE
	deadlineAt     time.Time
	flushTimer     *time.Timer // writes what a handler's Flush queued (see deferFlushLocked)
	flushArmed     bool
}

// flushDelay is how long what a handler flushed may wait in the queue
// for the handler's end (or another write) before it is written.
const flushDelay = time.Millisecond

// errStreamClosed: the stream was reset or its connection closed.
var errStreamClosed = errors.New("h2c: stream closed")

// maxQueued bounds what the server queues for a peer that does not read
// (control frames it keeps asking for): beyond it the connection ends.
const maxQueued = 4 << 20

func newConn(s *Server, nc net.Conn, br *bufio.Reader) *conn {
	c := &conn{
		srv:            s,
		nc:             nc,
		fr:             frameReader{r: br, max: defaultMaxFrameSize},
		remoteAddr:     nc.RemoteAddr().String(),
		streams:        make(map[uint32]*stream),
		sendConn:       defaultWindow,
		peerInitWindow: defaultWindow,
		peerMaxFrame:   defaultMaxFrameSize,
		canon:          make(map[string]string),
		inlineOK:       true,
		readerErr:      make(chan error, 1),
	}
	c.flow.L = &c.mu
	base := context.Background()
	if s.BaseContext != nil {
		base = s.BaseContext(nc)
	}
	c.ctx, c.cancel = context.WithCancel(base)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.hdec = hpack.NewDecoder(4096, c.emit)
	c.hdec.SetMaxStringLength(s.MaxHeaderBytes)
	c.recvConn.Store(int64(s.ConnWindow))
	c.lastActive.Store(time.Now().UnixNano())
	return c
}

// serve reads the connection's frames until it ends.
func (c *conn) serve() (err error) {
	c.idleTimer = time.AfterFunc(min(c.srv.IdleTimeout, c.srv.ReadTimeout), c.idleCheck)
	defer func() {
		c.close()
		if err == io.EOF || errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}()
	if err := c.fr.readPreface(); err != nil {
		return err
	}
	c.mu.Lock()
	var b [6 * 3]byte
	p := b[:0]
	p = appendSetting(p, settingMaxConcurrentStreams, c.srv.MaxConcurrentStreams)
	p = appendSetting(p, settingInitialWindowSize, uint32(c.srv.StreamWindow))
	p = appendSetting(p, settingMaxHeaderListSize, uint32(c.srv.MaxHeaderBytes))
	c.queueLocked(frameSettings, 0, 0, p)
	if inc := c.srv.ConnWindow - defaultWindow; inc > 0 {
		c.queueWindowUpdateLocked(0, uint32(inc))
	}
	_ = c.flushLocked()
	c.mu.Unlock()
	err = c.readFrames()
	if err == errHandedOff {
		err = <-c.readerErr // the goroutine reading now ends the connection
	}
	return err
}

// errHandedOff: the goroutine stopped reading frames; another one reads
// them now.
var errHandedOff = errors.New("h2c: frame reading handed off")

// readFrames reads and acts on frames until the connection fails, or
// until a handler it ran inline handed the reading to another goroutine.
func (c *conn) readFrames() error {
	for {
		h, p, err := c.fr.next()
		if err == nil {
			err = c.handle(h, p)
		}
		if err != nil {
			var ce *ConnError
			if errors.As(err, &ce) {
				c.srv.logf(slog.LevelDebug, "http2 connection error", slog.String("remote_addr", c.remoteAddr), slog.String("error", err.Error()))
				c.goAway(errCode(ce.Code), true)
			}
			return err
		}
		if len(c.pending) > 0 && !c.fr.frameReady() {
			if st := c.inlineCandidate(); st != nil {
				st.run()
				if st.handedOff {
					return errHandedOff
				}
				continue
			}
			c.dispatch()
		}
	}
}

// Unary requests of a connection without concurrent streams run inline.
//
// Handing a request to another goroutine costs a wake-up (and, with an
// idle processor, a thread's): on a connection whose client waits for
// each answer before it asks again (a grpc-go channel per Envoy worker, a
// benchmark's connection per worker) that was most of what separated a
// gRPC call from an HTTP/1.1 one. So when exactly one request is ready,
// its body is whole, no other stream is open and Server.Inline says its
// handler is unary, the reading goroutine runs it itself (and reads the
// next frames after it). A connection that once had two requests ready
// together runs every later one on workers: its client does not wait, and
// a slow handler would hold the others up. A handler that must wait for
// the client (flow control) first hands the frame reading to a new
// goroutine (stream.handOff).
func (c *conn) inlineCandidate() *stream {
	if c.srv.Inline == nil || !c.inlineOK {
		return nil
	}
	if len(c.pending) != 1 {
		c.inlineOK = false
		return nil
	}
	st := c.pending[0]
	c.mu.Lock()
	alone, reset := len(c.streams) == 1, st.reset
	c.mu.Unlock()
	if !alone {
		c.inlineOK = false
		return nil
	}
	if !st.unary || !st.remoteClosed || reset {
		return nil
	}
	c.pending[0] = nil
	c.pending = c.pending[:0]
	st.inline = true
	return st
}

// handOff starts a goroutine that reads the connection's frames in place
// of the one running st inline.
func (st *stream) handOff() {
	if !st.inline || st.handedOff {
		return
	}
	st.handedOff = true
	c := st.c
	go func() {
		if err := c.readFrames(); err != errHandedOff {
			c.readerErr <- err
		}
	}()
}

// dispatch starts the handlers of the streams whose requests arrived.
// They start once no further frame is buffered; a unary request's
// handler once its body is whole (or half the stream's window arrived:
// the rest comes as the handler reads), so it never waits for the body.
func (c *conn) dispatch() {
	keep := c.pending[:0]
	for _, st := range c.pending {
		if st.ready() {
			c.srv.workers.run(st)
		} else {
			keep = append(keep, st)
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
}

// ready reports whether st's handler may start (see dispatch). Called by
// the frame-reading goroutine, the only one that changes what it reads.
func (st *stream) ready() bool {
	return !st.unary || st.remoteClosed || st.received >= int64(st.c.srv.StreamWindow)/2 || st.reset
}

func (c *conn) handle(h frameHeader, p []byte) error {
	if c.contStream != 0 && h.typ != frameContinuation {
		return connErr(codeProtocol, "frame of type %d inside a header block", h.typ)
	}
	if !c.sawSettings {
		if h.typ != frameSettings || h.has(flagAck) {
			return connErr(codeProtocol, "first frame is not SETTINGS")
		}
		c.sawSettings = true
	}
	switch h.typ {
	case frameData:
		return c.onData(h, p)
	case frameHeaders:
		return c.onHeaders(h, p)
	case frameContinuation:
		return c.onContinuation(h, p)
	case framePriority:
		if h.streamID == 0 {
			return connErr(codeProtocol, "PRIORITY on stream 0")
		}
		if len(p) != 5 {
			return connErr(codeFrameSize, "PRIORITY of %d bytes", len(p))
		}
		return nil
	case frameRSTStream:
		return c.onRSTStream(h, p)
	case frameSettings:
		return c.onSettings(h, p)
	case framePushPromise:
		return connErr(codeProtocol, "PUSH_PROMISE from a client")
	case framePing:
		return c.onPing(h, p)
	case frameGoAway:
		if h.streamID != 0 {
			return connErr(codeProtocol, "GOAWAY on stream %d", h.streamID)
		}
		if len(p) < 8 {
			return connErr(codeFrameSize, "GOAWAY of %d bytes", len(p))
		}
		c.goAway(codeNo, false)
		return nil
	case frameWindowUpdate:
		return c.onWindowUpdate(h, p)
	default:
		return nil // unknown frame types are ignored (RFC 9113 §4.1)
	}
}

func (c *conn) onPing(h frameHeader, p []byte) error {
	if h.streamID != 0 {
		return connErr(codeProtocol, "PING on stream %d", h.streamID)
	}
	if len(p) != 8 {
		return connErr(codeFrameSize, "PING of %d bytes", len(p))
	}
	if h.has(flagAck) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.wbuf) > maxQueued {
		return connErr(codeEnhanceYourCalm, "peer does not read its PING answers")
	}
	c.queueLocked(framePing, flagAck, 0, p)
	_ = c.flushLocked()
	return nil
}

func (c *conn) onSettings(h frameHeader, p []byte) error {
	if h.streamID != 0 {
		return connErr(codeProtocol, "SETTINGS on stream %d", h.streamID)
	}
	if h.has(flagAck) {
		if len(p) != 0 {
			return connErr(codeFrameSize, "SETTINGS ACK with a payload")
		}
		return nil
	}
	if len(p)%6 != 0 {
		return connErr(codeFrameSize, "SETTINGS of %d bytes", len(p))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; len(p) > 0; p = p[6:] {
		id, v := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
		switch id {
		case settingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(v)
		case settingEnablePush:
			if v > 1 {
				return connErr(codeProtocol, "SETTINGS_ENABLE_PUSH %d", v)
			}
		case settingInitialWindowSize:
			if v > maxWindow {
				return connErr(codeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE %d", v)
			}
			delta := int64(v) - c.peerInitWindow
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return connErr(codeFlowControl, "stream window beyond 2^31-1")
				}
			}
			c.peerInitWindow = int64(v)
		case settingMaxFrameSize:
			if v < defaultMaxFrameSize || v > maxFrameSizeLimit {
				return connErr(codeProtocol, "SETTINGS_MAX_FRAME_SIZE %d", v)
			}
			c.peerMaxFrame = int(v)
		}
	}
	if len(c.wbuf) > maxQueued {
		return connErr(codeEnhanceYourCalm, "peer does not read its SETTINGS answers")
	}
	c.queueLocked(frameSettings, flagAck, 0, nil)
	c.flow.Broadcast()
	_ = c.flushLocked()
	return nil
}

func (c *conn) onWindowUpdate(h frameHeader, p []byte) error {
	if len(p) != 4 {
		return connErr(codeFrameSize, "WINDOW_UPDATE of %d bytes", len(p))
	}
	inc := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
	if h.streamID == 0 {
		if inc == 0 {
			return connErr(codeProtocol, "WINDOW_UPDATE of 0")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.sendConn += inc
		if c.sendConn > maxWindow {
			return connErr(codeFlowControl, "connection window beyond 2^31-1")
		}
		c.flow.Broadcast()
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[h.streamID]
	if st == nil {
		if h.streamID > c.maxClientID.Load() {
			return connErr(codeProtocol, "WINDOW_UPDATE on idle stream %d", h.streamID)
		}
		return nil // a closed stream: the update crossed its end
	}
	if inc == 0 {
		c.resetLocked(st, codeProtocol)
		return nil
	}
	st.sendWindow += inc
	if st.sendWindow > maxWindow {
		c.resetLocked(st, codeFlowControl)
		return nil
	}
	c.flow.Broadcast()
	return nil
}

func (c *conn) onRSTStream(h frameHeader, p []byte) error {
	if h.streamID == 0 {
		return connErr(codeProtocol, "RST_STREAM on stream 0")
	}
	if len(p) != 4 {
		return connErr(codeFrameSize, "RST_STREAM of %d bytes", len(p))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[h.streamID]
	if st == nil {
		if h.streamID > c.maxClientID.Load() {
			return connErr(codeProtocol, "RST_STREAM on idle stream %d", h.streamID)
		}
		return nil
	}
	st.reset = true // the client reset it: nothing more is sent on it
	st.cancel()
	c.flow.Broadcast()
	return nil
}

func (c *conn) onData(h frameHeader, p []byte) error {
	if h.streamID == 0 {
		return connErr(codeProtocol, "DATA on stream 0")
	}
	n := int64(len(p))
	if c.recvConn.Add(-n) < 0 {
		return connErr(codeFlowControl, "DATA beyond the connection window")
	}
	data, err := unpad(h, p)
	if err != nil {
		return err
	}
	c.mu.Lock()
	st := c.streams[h.streamID]
	c.mu.Unlock()
	if st == nil {
		if h.streamID > c.maxClientID.Load() {
			return connErr(codeProtocol, "DATA on idle stream %d", h.streamID)
		}
		c.returnConn(n) // a stream that ended (or was reset): dropped
		return nil
	}
	return st.onData(data, n, h.has(flagEndStream))
}

func (c *conn) onHeaders(h frameHeader, p []byte) error {
	if h.streamID == 0 {
		return connErr(codeProtocol, "HEADERS on stream 0")
	}
	if h.streamID%2 == 0 {
		return connErr(codeProtocol, "HEADERS on even stream %d", h.streamID)
	}
	p, err := unpad(h, p)
	if err != nil {
		return err
	}
	if h.has(flagPriority) {
		if len(p) < 5 {
			return connErr(codeFrameSize, "HEADERS too short for its priority")
		}
		p = p[5:]
	}
	c.hb = headerBlock{fields: c.hb.fields[:0]}
	c.blockBytes = 0
	c.contStream, c.contEnd = h.streamID, h.has(flagEndStream)
	return c.onBlockFragment(p, h.has(flagEndHeaders))
}

func (c *conn) onContinuation(h frameHeader, p []byte) error {
	if c.contStream == 0 || h.streamID != c.contStream {
		return connErr(codeProtocol, "CONTINUATION on stream %d outside a header block", h.streamID)
	}
	return c.onBlockFragment(p, h.has(flagEndHeaders))
}

func (c *conn) onBlockFragment(p []byte, end bool) error {
	c.blockBytes += len(p)
	if c.blockBytes > 4*c.srv.MaxHeaderBytes {
		return connErr(codeEnhanceYourCalm, "header block of more than %d bytes", 4*c.srv.MaxHeaderBytes)
	}
	if _, err := c.hdec.Write(p); err != nil {
		return connErr(codeCompression, "%v", err)
	}
	if !end {
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		return connErr(codeCompression, "%v", err)
	}
	id, endStream := c.contStream, c.contEnd
	c.contStream = 0
	return c.onHeaderBlock(id, endStream)
}

// headerBlock is what the decoder made of a header block so far.
type headerBlock struct {
	fields                          []hpack.HeaderField
	method, path, scheme, authority string
	size                            uint32
	regular, tooBig                 bool
	invalid                         string // why the block is malformed
}

// emit is the HPACK decoder's callback for each field.
func (c *conn) emit(f hpack.HeaderField) {
	hb := &c.hb
	hb.size += f.Size()
	if hb.size > uint32(c.srv.MaxHeaderBytes) {
		hb.tooBig = true
		return
	}
	if hb.invalid != "" {
		return
	}
	if f.IsPseudo() {
		if hb.regular {
			hb.invalid = "pseudo-header after a regular one"
			return
		}
		var dst *string
		switch f.Name {
		case ":method":
			dst = &hb.method
		case ":path":
			dst = &hb.path
		case ":scheme":
			dst = &hb.scheme
		case ":authority":
			dst = &hb.authority
		default:
			hb.invalid = "pseudo-header " + f.Name
			return
		}
		if *dst != "" || f.Value == "" {
			hb.invalid = "repeated or empty " + f.Name
			return
		}
		*dst = f.Value
		return
	}
	hb.regular = true
	if !validFieldName(f.Name) {
		hb.invalid = "invalid header name"
		return
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		hb.invalid = "connection-specific header " + f.Name
		return
	case "te":
		if f.Value != "trailers" {
			hb.invalid = "te other than trailers"
			return
		}
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		hb.invalid = "invalid value of " + f.Name
		return
	}
	hb.fields = append(hb.fields, f)
}

// validFieldName: a token in lower case (RFC 9113 §8.2.1).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if 'A' <= b && b <= 'Z' || !httpguts.IsTokenRune(rune(b)) {
			return false
		}
	}
	return true
}

// onHeaderBlock acts on a whole header block: a new request, or the
// trailers of one whose body is arriving.
func (c *conn) onHeaderBlock(id uint32, endStream bool) error {
	hb := &c.hb
	if id <= c.maxClientID.Load() {
		c.mu.Lock()
		st := c.streams[id]
		c.mu.Unlock()
		if st == nil {
			return nil // trailers of a stream that ended: decoded, dropped
		}
		if !endStream || hb.method != "" || hb.path != "" || hb.scheme != "" || hb.authority != "" {
			c.reset(st, codeProtocol)
			return nil
		}
		return st.onData(nil, 0, true)
	}
	c.mu.Lock()
	c.maxClientID.Store(id)
	switch {
	case c.goAwaySent:
		c.queueRSTLocked(id, codeRefusedStream)
		_ = c.flushLocked()
		c.mu.Unlock()
		return nil
	case len(c.streams) >= int(c.srv.MaxConcurrentStreams):
		c.queueRSTLocked(id, codeRefusedStream)
		_ = c.flushLocked()
		c.mu.Unlock()
		return nil
	case hb.tooBig:
		c.writeHeadersLocked(id, []hpack.HeaderField{{Name: ":status", Value: "431"}}, true)
		if !endStream {
			c.queueRSTLocked(id, codeNo)
		}
		_ = c.flushLocked()
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	req, err := c.newRequest(hb, endStream)
	if err != nil {
		c.mu.Lock()
		c.queueRSTLocked(id, codeProtocol)
		_ = c.flushLocked()
		c.mu.Unlock()
		c.srv.logf(slog.LevelDebug, "http2 malformed request", slog.String("remote_addr", c.remoteAddr), slog.String("error", err.Error()))
		return nil
	}
	st := newStream(c, id, req, endStream)
	c.mu.Lock()
	c.streams[id] = st
	c.mu.Unlock()
	c.pending = append(c.pending, st)
	return nil
}

// newRequest builds a stream's http.Request (its Body and context are
// set by newStream).
func (c *conn) newRequest(hb *headerBlock, endStream bool) (*http.Request, error) {
	if hb.invalid != "" {
		return nil, errors.New(hb.invalid)
	}
	if hb.method == "" || hb.path == "" || hb.scheme == "" {
		return nil, errors.New("missing :method, :path or :scheme")
	}
	if hb.method == http.MethodConnect {
		return nil, errors.New("CONNECT is not served")
	}
	u, err := url.ParseRequestURI(hb.path)
	if err != nil {
		return nil, errors.New("invalid :path")
	}
	header := make(http.Header, len(hb.fields))
	for _, f := range hb.fields {
		k := c.canonical(f.Name)
		header[k] = append(header[k], f.Value)
	}
	host := hb.authority
	if host == "" {
		host = header.Get("Host")
	}
	delete(header, "Host")
	cl := int64(-1)
	if v, ok := header["Content-Length"]; ok {
		if len(v) != 1 {
			return nil, errors.New("repeated content-length")
		}
		n, err := strconv.ParseUint(v[0], 10, 63)
		if err != nil {
			return nil, errors.New("invalid content-length")
		}
		cl = int64(n)
	}
	if endStream {
		if cl > 0 {
			return nil, errors.New("content-length without a body")
		}
		cl = 0
	}
	return &http.Request{
		Method:        hb.method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		ContentLength: cl,
		Host:          host,
		RemoteAddr:    c.remoteAddr,
		RequestURI:    hb.path,
	}, nil
}

// canonical returns the canonical form of a lower-case header name,
// remembering up to 256 names per connection.
func (c *conn) canonical(name string) string {
	switch name {
	case "content-type":
		return "Content-Type"
	case "te":
		return "Te"
	case "user-agent":
		return "User-Agent"
	case "grpc-timeout":
		return "Grpc-Timeout"
	case "grpc-accept-encoding":
		return "Grpc-Accept-Encoding"
	case "grpc-encoding":
		return "Grpc-Encoding"
	case "authorization":
		return "Authorization"
	case "content-length":
		return "Content-Length"
	case "accept-encoding":
		return "Accept-Encoding"
	}
	if k, ok := c.canon[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if len(c.canon) < 256 {
		c.canon[name] = k
	}
	return k
}

// Writing.

func appendSetting(b []byte, id uint16, v uint32) []byte {
	return append(b, byte(id>>8), byte(id), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// queueLocked appends a frame to what is to be written.
func (c *conn) queueLocked(typ, flags uint8, id uint32, payload []byte) {
	c.wbuf = appendFrameHeader(c.wbuf, len(payload), typ, flags, id)
	c.wbuf = append(c.wbuf, payload...)
}

func (c *conn) queueWindowUpdateLocked(id, inc uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], inc)
	c.queueLocked(frameWindowUpdate, 0, id, b[:])
}

func (c *conn) queueRSTLocked(id uint32, code errCode) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	c.queueLocked(frameRSTStream, 0, id, b[:])
}

// writeHeadersLocked encodes fields and queues them as HEADERS and, past
// the peer's frame size, CONTINUATION frames.
func (c *conn) writeHeadersLocked(id uint32, fields []hpack.HeaderField, endStream bool) {
	c.hbuf.Reset()
	for _, f := range fields {
		_ = c.henc.WriteField(f) // writes to a bytes.Buffer: no error
	}
	block := c.hbuf.Bytes()
	typ, flags := uint8(frameHeaders), uint8(0)
	if endStream {
		flags = flagEndStream
	}
	for {
		n := min(len(block), c.peerMaxFrame)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		c.queueLocked(typ, f, id, block[:n])
		block = block[n:]
		if len(block) == 0 {
			return
		}
		typ, flags = frameContinuation, 0
	}
}

// flushLocked writes what is queued, unless another goroutine is writing:
// that one writes it when its write returns, with what else was queued
// meanwhile, so answers that are ready together leave in one write. mu is
// released while writing.
func (c *conn) flushLocked() error {
	if c.flushArmed && len(c.wbuf) > 0 && !c.flushing {
		c.flushTimer.Stop()
		c.flushArmed = false
	}
	for len(c.wbuf) > 0 && !c.flushing && c.werr == nil && !c.closed {
		out := c.wbuf
		c.wbuf, c.spare = c.spare[:0], nil
		c.flushing = true
		now := time.Now()
		setDeadline := now.Sub(c.deadlineAt) > c.srv.WriteTimeout/4
		if setDeadline {
			c.deadlineAt = now
		}
		c.mu.Unlock()
		if setDeadline {
			_ = c.nc.SetWriteDeadline(now.Add(c.srv.WriteTimeout))
		}
		_, err := c.nc.Write(out)
		c.mu.Lock()
		c.flushing = false
		if cap(out) <= 64<<10 {
			c.spare = out[:0]
		}
		if err != nil {
			c.werr = err
			c.flow.Broadcast()
			_ = c.nc.Close() // the serve goroutine's read fails and ends the connection
		}
	}
	if c.closed && c.werr == nil {
		return net.ErrClosed
	}
	return c.werr
}

// deferFlushLocked has what is queued written within flushDelay unless
// another write takes it first. connect-go flushes every message it
// sends, unary answers too, before it writes the trailers: written at
// once, a unary answer would take two writes; deferred, the handler's
// end writes it with the trailers. A streaming answer's messages arrive
// at most flushDelay late (and at once when its handler waits for the
// client: see requestBody.Read).
func (c *conn) deferFlushLocked() {
	if len(c.wbuf) == 0 || c.flushArmed || c.closed {
		return
	}
	c.flushArmed = true
	if c.flushTimer == nil {
		c.flushTimer = time.AfterFunc(flushDelay, c.timedFlush)
	} else {
		c.flushTimer.Reset(flushDelay)
	}
}

func (c *conn) timedFlush() {
	c.mu.Lock()
	c.flushArmed = false
	_ = c.flushLocked()
	c.mu.Unlock()
}

// returnConn gives n bytes of the connection's window back to the client
// once half the window is to be returned.
func (c *conn) returnConn(n int64) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	c.connConsumed += n
	if c.connConsumed >= int64(c.srv.ConnWindow)/2 {
		inc := c.connConsumed
		c.connConsumed = 0
		c.recvConn.Add(inc)
		c.queueWindowUpdateLocked(0, uint32(inc))
		_ = c.flushLocked()
	}
	c.mu.Unlock()
}

// reset ends a stream with RST_STREAM.
func (c *conn) reset(st *stream, code errCode) {
	c.mu.Lock()
	c.resetLocked(st, code)
	_ = c.flushLocked()
	c.mu.Unlock()
}

func (c *conn) resetLocked(st *stream, code errCode) {
	if st.reset || st.ended {
		return
	}
	st.reset = true
	c.queueRSTLocked(st.id, code)
	st.cancel()
	c.flow.Broadcast()
}

// goAway sends GOAWAY naming the last stream the server takes. With
// now, or without streams, the connection then closes; otherwise it
// closes when its last stream ends.
func (c *conn) goAway(code errCode, now bool) {
	c.mu.Lock()
	if !c.goAwaySent || now {
		c.goAwaySent = true
		var b [8]byte
		binary.BigEndian.PutUint32(b[:4], c.maxClientID.Load())
		binary.BigEndian.PutUint32(b[4:], uint32(code))
		c.queueLocked(frameGoAway, 0, 0, b[:])
	}
	_ = c.flushLocked()
	empty := len(c.streams) == 0
	c.mu.Unlock()
	if now || empty {
		c.close()
	}
}

// close ends the connection: the handlers' contexts are canceled and
// their writes fail.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.flow.Broadcast()
	c.mu.Unlock()
	c.cancel()
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.mu.Lock()
	if c.flushTimer != nil {
		c.flushTimer.Stop()
	}
	c.mu.Unlock()
	_ = c.nc.Close()
}

// idleCheck closes the connection after IdleTimeout without streams, or
// when every stream it has is a request whose handler has not started
// ReadTimeout after its HEADERS (a unary request starts once its body is
// whole: a client that never ends it would hold the connection forever).
func (c *conn) idleCheck() {
	c.mu.Lock()
	busy, closed := len(c.streams) > 0, c.closed
	stalled := busy
	for _, st := range c.streams {
		if st.started.Load() || time.Since(st.start) < c.srv.ReadTimeout {
			stalled = false
			break
		}
	}
	c.mu.Unlock()
	if closed {
		return
	}
	if stalled {
		c.srv.logf(slog.LevelDebug, "http2 requests not received in time", slog.String("remote_addr", c.remoteAddr))
		c.goAway(codeNo, true)
		return
	}
	idle := time.Since(time.Unix(0, c.lastActive.Load()))
	if !busy && idle >= c.srv.IdleTimeout {
		c.goAway(codeNo, true)
		return
	}
	c.idleTimer.Reset(min(c.srv.ReadTimeout, max(c.srv.IdleTimeout-idle, time.Second)))
}
