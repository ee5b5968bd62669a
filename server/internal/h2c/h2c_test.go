package h2c_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/chaperone-pdp/chaperone/server/internal/h2c"
)

// serve runs s on a loopback port and returns its address.
func serve(t testing.TB, s *h2c.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = s.ServeConn(c, bufio.NewReader(c)) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// client is a raw HTTP/2 client connection.
type client struct {
	t    testing.TB
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// answers are the streams' answers so far.
	answers map[uint32]*answer
}

func dial(t testing.TB, addr string, settings ...http2.Setting) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) settings(s ...http2.Setting) *client {
	if err := c.fr.WriteSettings(s...); err != nil {
		c.t.Fatal(err)
	}
	return c
}

// block encodes a header block: pseudo-headers for a POST to path, then
// extra name/value pairs.
func (c *client) block(path string, extra ...string) []byte {
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "test"}, {":path", path}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

func (c *client) headers(id uint32, end bool, block []byte) {
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: end, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// answer is what the server sent on one stream, or the connection's end.
type answer struct {
	status  string
	body    []byte
	trailer map[string]string
	rst     http2.ErrCode
	goAway  *http2.GoAwayFrame
	ended   bool // the connection ended
	done    bool // the stream ended
}

// read reads frames until stream id ends (END_STREAM or RST_STREAM) or
// the server sends GOAWAY (id 0: until GOAWAY or the connection's end).
// Frames of other streams are kept for their own read.
func (c *client) read(id uint32) answer {
	c.t.Helper()
	if c.answers == nil {
		c.answers = map[uint32]*answer{}
	}
	if a := c.answers[id]; a != nil && a.done {
		return *a
	}
	for range 10000 {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
				return answer{ended: true}
			}
			c.t.Fatalf("read: %v", err)
		}
		sid := f.Header().StreamID
		a := c.answers[sid]
		if a == nil && sid != 0 {
			a = &answer{}
			c.answers[sid] = a
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			g := *f
			return answer{goAway: &g}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if a.status == "" {
				a.status = f.PseudoValue("status")
			} else {
				a.trailer = map[string]string{}
				for _, hf := range f.RegularFields() {
					a.trailer[hf.Name] = hf.Value
				}
			}
			a.done = f.StreamEnded()
		case *http2.DataFrame:
			a.body = append(a.body, f.Data()...)
			if n := len(f.Data()); n > 0 {
				_ = c.fr.WriteWindowUpdate(0, uint32(n))
				_ = c.fr.WriteWindowUpdate(sid, uint32(n))
			}
			a.done = f.StreamEnded()
		case *http2.RSTStreamFrame:
			a.rst, a.done = f.ErrCode, true
		}
		if a != nil && sid == id && a.done {
			return *a
		}
	}
	c.t.Fatal("no end after 10000 frames")
	return answer{}
}

// echo answers the request body with a trailer.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, r.Body)
	w.Header().Set(http.TrailerPrefix+"X-Done", "yes")
}

// held is a handler that signals when it starts and returns when
// released (or its request ends).
type held struct {
	started chan struct{}
	release chan struct{}
}

func newHeld() *held { return &held{started: make(chan struct{}, 16), release: make(chan struct{})} }

func (h *held) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/held" {
		echo(w, r)
		return
	}
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	_, _ = io.WriteString(w, "released")
}

// always runs every request inline where the connection allows it.
func always(*http.Request) bool { return true }

func TestEcho(t *testing.T) {
	t.Parallel()
	for _, inline := range []func(*http.Request) bool{nil, always} {
		addr := serve(t, &h2c.Server{Handler: http.HandlerFunc(echo), Inline: inline})
		testEcho(t, addr)
	}
}

func testEcho(t *testing.T, addr string) {
	c := dial(t, addr).settings()
	c.headers(1, false, c.block("/echo"))
	if err := c.fr.WriteData(1, true, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	a := c.read(1)
	if a.status != "200" || string(a.body) != "hello" || a.trailer["x-done"] != "yes" {
		t.Fatalf("answer %+v", a)
	}
	// An answer without a body and without trailers is one HEADERS frame.
	c.headers(3, true, c.block("/empty"))
	if a := c.read(3); a.status != "200" || len(a.body) != 0 {
		t.Fatalf("answer %+v", a)
	}
}

// TestSmallClientWindow: an answer far larger than the client's windows
// waits for its WINDOW_UPDATEs and arrives whole.
func TestSmallClientWindow(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789"), 50000)
	for _, inline := range []func(*http.Request) bool{nil, always} {
		addr := serve(t, &h2c.Server{Inline: inline, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(big)
		})})
		c := dial(t, addr).settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
		for id := uint32(1); id <= 5; id += 2 { // inline, the frame reading handed off each time
			c.headers(id, true, c.block("/big"))
			if a := c.read(id); a.status != "200" || !bytes.Equal(a.body, big) {
				t.Fatalf("stream %d: status %s, %d bytes", id, a.status, len(a.body))
			}
		}
		// Two requests at once: the connection's later requests run on workers.
		c.headers(7, true, c.block("/big"))
		c.headers(9, true, c.block("/big"))
		for _, id := range []uint32{7, 9} {
			if a := c.read(id); a.status != "200" || !bytes.Equal(a.body, big) {
				t.Fatalf("stream %d: status %s, %d bytes", id, a.status, len(a.body))
			}
		}
	}
}

// TestProtocolErrors: what breaks the protocol ends the connection with
// GOAWAY and its code; what is wrong with one stream resets that stream;
// either way the server goes on serving other connections.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	h := newHeld()
	s := &h2c.Server{Handler: h, MaxHeaderBytes: 4096, MaxConcurrentStreams: 2, StreamWindow: 1000}
	addr := serve(t, s)
	type want struct {
		goAway http2.ErrCode // when the connection ends
		rst    http2.ErrCode // when stream 1 is reset
		status string        // when stream 1 is answered
	}
	raw := func(c *client, b ...byte) {
		if _, err := c.conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	bigHeaders := func(c *client) []byte {
		var extra []string
		for i := range 10 {
			extra = append(extra, "x-big-"+string(rune('a'+i)), strings.Repeat("v", 1000))
		}
		return c.block("/echo", extra...)
	}
	for _, tc := range []struct {
		name string
		send func(c *client)
		want want
	}{
		{"first frame is not SETTINGS", func(c *client) { _ = c.fr.WritePing(false, [8]byte{}) }, want{goAway: http2.ErrCodeProtocol}},
		{"DATA on stream 0", func(c *client) { c.settings(); raw(c, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'x') }, want{goAway: http2.ErrCodeProtocol}},
		{"HEADERS on an even stream", func(c *client) { c.settings(); c.headers(2, true, c.block("/echo")) }, want{goAway: http2.ErrCodeProtocol}},
		{"frame above the maximum size", func(c *client) { c.settings(); raw(c, 0, 0x80, 0, 0, 0, 0, 0, 0, 1) }, want{goAway: http2.ErrCodeFrameSize}},
		{"CONTINUATION without HEADERS", func(c *client) { c.settings(); _ = c.fr.WriteContinuation(1, true, c.block("/echo")) }, want{goAway: http2.ErrCodeProtocol}},
		{"another frame inside a header block", func(c *client) {
			c.settings()
			_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("/echo"), EndStream: true})
			_ = c.fr.WritePing(false, [8]byte{})
		}, want{goAway: http2.ErrCodeProtocol}},
		{"undecodable HPACK", func(c *client) { c.settings(); c.headers(1, true, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) }, want{goAway: http2.ErrCodeCompression}},
		{"header list above the limit", func(c *client) { c.settings(); c.headers(1, true, bigHeaders(c)) }, want{status: "431"}},
		{"PING of 7 bytes", func(c *client) { c.settings(); raw(c, 0, 0, 7, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7) }, want{goAway: http2.ErrCodeFrameSize}},
		{"SETTINGS window above 2^31-1", func(c *client) { c.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}) }, want{goAway: http2.ErrCodeFlowControl}},
		{"SETTINGS frame size below 16384", func(c *client) { c.settings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100}) }, want{goAway: http2.ErrCodeProtocol}},
		{"connection window above 2^31-1", func(c *client) { c.settings(); _ = c.fr.WriteWindowUpdate(0, 1<<31-1) }, want{goAway: http2.ErrCodeFlowControl}},
		{"WINDOW_UPDATE of 0", func(c *client) { c.settings(); raw(c, 0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0) }, want{goAway: http2.ErrCodeProtocol}},
		{"RST_STREAM on an idle stream", func(c *client) { c.settings(); _ = c.fr.WriteRSTStream(7, http2.ErrCodeCancel) }, want{goAway: http2.ErrCodeProtocol}},
		{"PUSH_PROMISE from the client", func(c *client) {
			c.settings()
			_ = c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: c.block("/x"), EndHeaders: true})
		}, want{goAway: http2.ErrCodeProtocol}},
		{"pseudo-header after a regular one", func(c *client) {
			c.settings()
			c.hbuf.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {"x-a", "1"}, {":path", "/echo"}, {":scheme", "http"}} {
				_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			c.headers(1, true, bytes.Clone(c.hbuf.Bytes()))
		}, want{rst: http2.ErrCodeProtocol}},
		{"upper-case header name", func(c *client) { c.settings(); c.headers(1, true, c.block("/echo", "X-Upper", "1")) }, want{rst: http2.ErrCodeProtocol}},
		{"connection header", func(c *client) { c.settings(); c.headers(1, true, c.block("/echo", "connection", "keep-alive")) }, want{rst: http2.ErrCodeProtocol}},
		{"no :path", func(c *client) {
			c.settings()
			c.hbuf.Reset()
			_ = c.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
			_ = c.enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
			c.headers(1, true, bytes.Clone(c.hbuf.Bytes()))
		}, want{rst: http2.ErrCodeProtocol}},
		{"content-length above the body", func(c *client) {
			c.settings()
			c.headers(1, false, c.block("/echo", "content-length", "10"))
			_ = c.fr.WriteData(1, true, []byte("abc"))
		}, want{rst: http2.ErrCodeProtocol}},
		{"DATA beyond the stream window", func(c *client) {
			c.settings()
			c.headers(1, false, c.block("/held"))
			<-h.started
			_ = c.fr.WriteData(1, false, make([]byte, 1500))
		}, want{rst: http2.ErrCodeFlowControl}},
		{"DATA after END_STREAM", func(c *client) {
			c.settings()
			c.headers(1, true, c.block("/held"))
			<-h.started
			_ = c.fr.WriteData(1, true, []byte("late"))
		}, want{rst: http2.ErrCodeStreamClosed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			tc.send(c)
			a := c.read(1)
			switch {
			case tc.want.goAway != 0:
				if a.goAway == nil || a.goAway.ErrCode != tc.want.goAway {
					t.Fatalf("got %+v, want GOAWAY %v", a, tc.want.goAway)
				}
				if end := c.read(0); !end.ended {
					t.Fatalf("connection open after GOAWAY: %+v", end)
				}
			case tc.want.rst != 0:
				if a.rst != tc.want.rst {
					t.Fatalf("got %+v, want RST_STREAM %v", a, tc.want.rst)
				}
			default:
				if a.status != tc.want.status {
					t.Fatalf("got %+v, want status %s", a, tc.want.status)
				}
			}
			// The server still answers on a fresh connection.
			ok := dial(t, addr).settings()
			ok.headers(1, false, ok.block("/echo"))
			_ = ok.fr.WriteData(1, true, []byte("still here"))
			if a := ok.read(1); string(a.body) != "still here" {
				t.Fatalf("after %s: %+v", tc.name, a)
			}
		})
	}
}

// TestMaxConcurrentStreams: a stream beyond the advertised limit is
// refused (REFUSED_STREAM: unprocessed, a client may retry it); the
// streams within it are answered.
func TestMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	h := newHeld()
	addr := serve(t, &h2c.Server{Handler: h, MaxConcurrentStreams: 2})
	c := dial(t, addr).settings()
	c.headers(1, true, c.block("/held"))
	c.headers(3, true, c.block("/held"))
	<-h.started
	<-h.started
	c.headers(5, true, c.block("/held"))
	if a := c.read(5); a.rst != http2.ErrCodeRefusedStream {
		t.Fatalf("third stream: %+v", a)
	}
	close(h.release)
	for _, id := range []uint32{1, 3} {
		if a := c.read(id); string(a.body) != "released" {
			t.Fatalf("stream %d: %+v", id, a)
		}
	}
}

// TestShutdownDrains: Shutdown sends GOAWAY naming the last stream
// taken; that stream's answer still arrives, a later stream is refused,
// and the connection then closes and Shutdown returns.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	h := newHeld()
	s := &h2c.Server{Handler: h}
	addr := serve(t, s)
	c := dial(t, addr).settings()
	c.headers(1, true, c.block("/held"))
	<-h.started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	a := c.read(0)
	if a.goAway == nil || a.goAway.ErrCode != http2.ErrCodeNo || a.goAway.LastStreamID != 1 {
		t.Fatalf("want GOAWAY NO_ERROR last stream 1, got %+v", a)
	}
	c.headers(3, true, c.block("/echo"))
	if a := c.read(3); a.rst != http2.ErrCodeRefusedStream {
		t.Fatalf("stream after GOAWAY: %+v", a)
	}
	close(h.release)
	if a := c.read(1); a.status != "200" || string(a.body) != "released" {
		t.Fatalf("in-flight stream: %+v", a)
	}
	if end := c.read(0); !end.ended {
		t.Fatalf("connection open after the last stream: %+v", end)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	p, _ := net.Pipe()
	if err := s.ServeConn(p, bufio.NewReader(p)); !errors.Is(err, h2c.ErrServerClosed) {
		t.Fatalf("ServeConn after Shutdown = %v", err)
	}
}

// TestClientReset: a stream the client resets has its handler's context
// canceled.
func TestClientReset(t *testing.T) {
	t.Parallel()
	canceled := make(chan struct{})
	started := make(chan struct{})
	addr := serve(t, &h2c.Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(canceled)
	})})
	c := dial(t, addr).settings()
	c.headers(1, true, c.block("/x"))
	<-started
	_ = c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	<-canceled
}

// TestLargeUnaryBody: a request handled as unary (started once its body
// is whole) with a body larger than the windows still starts (once half
// the stream's window arrived) and is answered whole, with Go's client.
func TestLargeUnaryBody(t *testing.T) {
	t.Parallel()
	addr := serve(t, &h2c.Server{Handler: http.HandlerFunc(echo), Inline: always, StreamWindow: 64 << 10, ConnWindow: 128 << 10})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 30 * time.Second}
	body := bytes.Repeat([]byte("chaperone "), 300000) // 3 MB
	for range 3 {
		resp, err := client.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) || resp.Trailer.Get("X-Done") != "yes" {
			t.Fatalf("%v: %d bytes back, trailer %v", err, len(got), resp.Trailer)
		}
	}
}

// TestStalledUnaryRequest: a unary request whose body never ends (its
// handler waits for the whole body, so never starts) does not hold the
// connection open past ReadTimeout.
func TestStalledUnaryRequest(t *testing.T) {
	t.Parallel()
	addr := serve(t, &h2c.Server{Handler: http.HandlerFunc(echo), Inline: always, ReadTimeout: 50 * time.Millisecond})
	c := dial(t, addr).settings()
	c.headers(1, false, c.block("/echo"))
	_ = c.fr.WriteData(1, false, []byte("and then nothing"))
	a := c.read(0)
	if a.goAway == nil {
		t.Fatalf("want GOAWAY, got %+v", a)
	}
	if end := c.read(0); !end.ended {
		t.Fatalf("connection open: %+v", end)
	}
}
