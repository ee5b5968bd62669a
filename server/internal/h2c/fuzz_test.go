package h2c_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/chaperone-pdp/chaperone/server/internal/h2c"
)

// memConn is a connection whose reads come from a byte slice (then EOF)
// and whose writes are kept.
type memConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (c *memConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *memConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// seedFrames are a valid client's frames after the preface: SETTINGS,
// a request split over HEADERS and CONTINUATION with a padded body,
// a second request, PING, WINDOW_UPDATE and a reset.
func seedFrames() []byte {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(path string, extra ...string) []byte {
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", path}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		for i := 0; i+1 < len(extra); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	first := block("/chaperone.v1.DecisionService/Check", "grpc-timeout", "1S")
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first[:5]})
	_ = fr.WriteContinuation(1, true, first[5:])
	_ = fr.WriteDataPadded(1, false, []byte{0, 0, 0, 0, 3, 'a', 'b', 'c'}, []byte{0, 0})
	_ = fr.WriteData(1, true, nil)
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("/x"), EndHeaders: true, EndStream: true})
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteWindowUpdate(0, 1000)
	_ = fr.WriteWindowUpdate(1, 1000)
	_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	_ = fr.WriteGoAway(3, http2.ErrCodeNo, nil)
	return b.Bytes()
}

// FuzzServeConn: whatever a client sends after the preface, the server
// neither panics nor hangs, and everything it writes is well-formed
// HTTP/2 (frames and HPACK a client decodes).
func FuzzServeConn(f *testing.F) {
	seed := seedFrames()
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0x7f, 0xff, 0xff, 0xff})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("end"))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &h2c.Server{Handler: handler, Inline: always, ReadTimeout: time.Second, MaxHeaderBytes: 2048, StreamWindow: 4096, ConnWindow: 8192}
		c := &memConn{r: bytes.NewReader(append([]byte(http2.ClientPreface), in...))}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.ServeConn(c, bufio.NewReader(c))
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return at the end of its input")
		}
		fr := http2.NewFramer(nil, bytes.NewReader(c.written()))
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		fr.MaxHeaderListSize = 1 << 20
		for range 100000 {
			_, err := fr.ReadFrame()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("the server wrote a frame a client cannot read: %v", err)
			}
		}
	})
}
