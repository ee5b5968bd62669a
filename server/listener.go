package server

import (
	"bufio"
	"net"
	"strings"
)

// readBufferSize is the read buffer of a connection of [BufferedListener]:
// net/http's HTTP/1.1 reader reads with a buffer of this size, so those
// reads go to the socket directly, unbuffered twice.
const readBufferSize = 4 << 10

// BufferedListener returns ln whose connections buffer their reads. Go's
// HTTP/2 server reads every frame from the connection with two reads, its
// 9-byte header and then its payload, each one a system call: a gRPC call
// (HEADERS, DATA and the peer's WINDOW_UPDATE frames) costs six or more.
// Buffered, the frames that arrived together are read with one. HTTP/1.1
// reads, already buffered by net/http in blocks of the same size, pass
// straight through. On a cleartext HTTP/2 connection (one that opens with
// the client preface) it also coalesces the server's writes (see
// h2cWrites): a gRPC answer is one write instead of three. Serve the
// server's http.Server on it, over TLS or not (the TLS layer reads from
// and writes to the buffered connection, whose writes it leaves alone).
func BufferedListener(ln net.Listener) net.Listener { return bufferedListener{ln} }

type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}, nil
}

// bufferedConn is a connection whose reads go through r. Like any
// net.Conn it is read by one goroutine at a time (net/http's readers do).
// On an h2c connection its writes are coalesced (see h2cWrites).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
	// sniff holds the first bytes read until they tell whether the
	// connection opens with HTTP/2's client preface (cleartext HTTP/2).
	sniff   []byte
	decided bool
	w       h2cWrites
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if !c.decided && n > 0 {
		c.sniffPreface(p[:n])
	}
	return n, err
}

func (c *bufferedConn) sniffPreface(b []byte) {
	b = b[:min(len(b), len(http2Preface)-len(c.sniff))]
	c.sniff = append(c.sniff, b...)
	switch {
	case !strings.HasPrefix(http2Preface, string(c.sniff)):
		c.decided, c.sniff = true, nil
	case len(c.sniff) == len(http2Preface):
		c.decided, c.sniff = true, nil
		c.w.start(c.Conn)
	}
}

func (c *bufferedConn) Write(p []byte) (int, error) {
	if !c.w.on.Load() {
		return c.Conn.Write(p)
	}
	return c.w.write(p)
}

func (c *bufferedConn) Close() error {
	c.w.close()
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection, as net/http does before closing
// one it refuses (it looks for this method).
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
