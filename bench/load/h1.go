package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// h1Sender speaks HTTP/1.1 itself over one keep-alive TCP connection per
// worker, with every request's bytes (head and body) prepared once. The
// generator shares the machine's cores with the server it measures, so
// each request should cost it as little as possible: one write, one or
// two reads and a scan of the response head, where net/http's client
// spends several times that on its connection goroutines and header maps.
// It serves plain http:// targets; https:// goes through net/http.
type h1Sender struct {
	addr    string   // host:port to dial
	reqs    [][]byte // request n's bytes
	timeout time.Duration
	decode  func([]byte) (string, error)
	// denyStatus, when not 0, is the HTTP status of a DENY (the
	// forward-auth door's 403); any other status but 200 is an error.
	denyStatus int
	// render, when not nil, makes request i's bytes per request (with
	// distinct resource ids) into dst instead of reqs[i].
	render  func(dst []byte, i int) ([]byte, error)
	scratch []byte

	conn net.Conn
	br   *bufio.Reader
	body bytes.Buffer
	stop func() bool // unregisters the context watch of conn
}

// errProtocol is a response this client cannot read.
var errProtocol = errors.New("malformed HTTP/1.1 response")

// newH1Requests renders each body as a complete POST to base+path; head is
// the request head up to its Content-Length value, for bodies made later.
func newH1Requests(base, path, contentType string, bodies [][]byte) (addr, head string, reqs [][]byte, err error) {
	addr, head, err = h1Head(base, path, contentType)
	if err != nil {
		return "", "", nil, err
	}
	reqs = make([][]byte, len(bodies))
	for i, b := range bodies {
		reqs[i] = appendH1Request(nil, head, b)
	}
	return addr, head, reqs, nil
}

// h1Head returns the address to dial and the head of a POST to base+path,
// up to its Content-Length value.
func h1Head(base, path, contentType string) (addr, head string, err error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", "", fmt.Errorf("address %q: want host:port or http://host:port", base)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	head = "POST " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUser-Agent: chaperone-bench\r\nContent-Type: " + contentType + "\r\nContent-Length: "
	return addr, head, nil
}

func appendH1Request(dst []byte, head string, body []byte) []byte {
	dst = append(dst, head...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}

func (s *h1Sender) send(ctx context.Context, i int) outcome {
	req := s.reqs[i]
	if s.render != nil {
		var err error
		if s.scratch, err = s.render(s.scratch[:0], i); err != nil {
			return outcome{code: "internal"}
		}
		req = s.scratch
	}
	status, body, err := s.roundTrip(ctx, req)
	if err != nil {
		s.close()
		if errors.Is(err, errProtocol) {
			return outcome{code: "bad_response"}
		}
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return outcome{code: transportCode(err)}
	}
	if status == s.denyStatus {
		return outcome{decision: "DENY"}
	}
	if status != 200 {
		return outcome{code: httpErrorCode(status, body)}
	}
	d, err := s.decode(body)
	if err != nil {
		return outcome{code: "bad_response"}
	}
	return outcome{decision: d}
}

// roundTrip writes one request and reads its response; the body is valid
// until the next call.
func (s *h1Sender) roundTrip(ctx context.Context, req []byte) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return 0, nil, err
		}
	}
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := s.conn.SetDeadline(deadline); err != nil {
		return 0, nil, err
	}
	if _, err := s.conn.Write(req); err != nil {
		return 0, nil, err
	}
	status, length, chunked, closeAfter, err := s.readHead()
	if err != nil {
		return 0, nil, err
	}
	s.body.Reset()
	switch {
	case chunked:
		if _, err := s.body.ReadFrom(httputil.NewChunkedReader(s.br)); err != nil {
			return 0, nil, err
		}
		if err := s.skipTrailer(); err != nil {
			return 0, nil, err
		}
	case length >= 0:
		s.body.Grow(length)
		if _, err := io.CopyN(&s.body, s.br, int64(length)); err != nil {
			return 0, nil, err
		}
	default: // delimited by the end of the connection
		if _, err := s.body.ReadFrom(s.br); err != nil {
			return 0, nil, err
		}
		closeAfter = true
	}
	if closeAfter {
		s.close()
	}
	return status, s.body.Bytes(), nil
}

func (s *h1Sender) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: s.timeout}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	s.conn, s.br = c, bufio.NewReaderSize(c, 16<<10)
	// A cancelled run unblocks a worker waiting for its answer.
	s.stop = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return nil
}

func (s *h1Sender) close() {
	if s.conn != nil {
		s.stop()
		_ = s.conn.Close()
		s.conn, s.br = nil, nil
	}
}

// readHead reads the status line and the headers this client acts on.
// length is -1 when the response gave none.
func (s *h1Sender) readHead() (status, length int, chunked, closeAfter bool, err error) {
	line, err := s.line()
	if err != nil {
		return 0, 0, false, false, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, 0, false, false, fmt.Errorf("%w: status line %q", errProtocol, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, false, false, fmt.Errorf("%w: status line %q", errProtocol, line)
	}
	closeAfter = line[7] == '0' // HTTP/1.0 closes unless told otherwise
	length = -1
	for {
		line, err := s.line()
		if err != nil {
			return 0, 0, false, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, 0, false, false, fmt.Errorf("%w: header line %q", errProtocol, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return 0, 0, false, false, fmt.Errorf("%w: Content-Length %q", errProtocol, value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = bytes.EqualFold(value, []byte("close"))
		}
	}
	if status/100 == 1 { // an interim response: the real one follows
		return s.readHead()
	}
	if status == 204 || status == 304 {
		length = 0
	}
	return status, length, chunked, closeAfter, nil
}

// line reads one CRLF-terminated line without its line end; it is valid
// until the next read.
func (s *h1Sender) line() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: header line longer than %d bytes", errProtocol, s.br.Size())
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// skipTrailer reads the trailer section after the last chunk.
func (s *h1Sender) skipTrailer() error {
	for {
		line, err := s.line()
		if err != nil || len(line) == 0 {
			return err
		}
	}
}
