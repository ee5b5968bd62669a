package server

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/grpchealth"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/chaperone-pdp/chaperone/server/internal/h2c"
)

// ServeH2C serves hs (whose handler is s) on ln, in cleartext, like
// hs.Serve(BufferedListener(ln)) except that connections that open with
// HTTP/2's client preface (gRPC, Envoy's ext_authz, any h2c client) are
// served by the server's own HTTP/2 server (package
// server/internal/h2c, which says why and what it saves) with the same
// handler: every service, door, interceptor, caller check, rate limit
// and audit record is the same. HTTP/1.1 connections go to hs. It
// returns http.ErrServerClosed after [Server.Shutdown].
func (s *Server) ServeH2C(hs *http.Server, ln net.Listener) error {
	h2 := s.h2cServer(hs)
	cl := &connListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(cl) }()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-cl.done:
				return <-errc
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			cl.fail(err)
			<-errc
			return err
		}
		delay = 0
		go s.routeConn(nc, hs, h2, cl)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown shuts hs down (see http.Server.Shutdown) and, at the same
// time, the HTTP/2 connections of [Server.ServeH2C]: each is sent GOAWAY,
// its streams finish and it closes. When ctx ends first the remaining
// connections are closed.
func (s *Server) Shutdown(ctx context.Context, hs *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- s.h2cServer(hs).Shutdown(ctx) }()
	err := hs.Shutdown(ctx)
	return errors.Join(err, <-errc)
}

func (s *Server) h2cServer(hs *http.Server) *h2c.Server {
	s.h2cOnce.Do(func() {
		s.h2c = &h2c.Server{
			Handler:        http.HandlerFunc(s.serveOnWarmStack),
			Logger:         s.logger,
			ReadTimeout:    s.readTimeout,
			IdleTimeout:    hs.IdleTimeout,
			MaxHeaderBytes: hs.MaxHeaderBytes,
			Inline:         unaryProcedures(append([]string{grpchealth.HealthV1ServiceName}, s.services...)),
			BaseContext: func(nc net.Conn) context.Context {
				ctx := context.WithValue(context.Background(), http.ServerContextKey, hs)
				return context.WithValue(ctx, http.LocalAddrContextKey, nc.LocalAddr())
			},
		}
	})
	return s.h2c
}

// unaryProcedures returns whether a request is a POST to a unary
// procedure of the named services (their descriptors are in the global
// registry: generated code registers them). A service not found there
// has none.
func unaryProcedures(services []string) func(*http.Request) bool {
	unary := make(map[string]bool)
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			if !m.IsStreamingClient() && !m.IsStreamingServer() {
				unary["/"+name+"/"+string(m.Name())] = true
			}
		}
	}
	return func(r *http.Request) bool { return r.Method == http.MethodPost && unary[r.URL.Path] }
}

// routeConn reads the first bytes of a connection: the HTTP/2 client
// preface sends it to h2, anything else to hs.
func (s *Server) routeConn(nc net.Conn, hs *http.Server, h2 *h2c.Server, cl *connListener) {
	br := bufio.NewReaderSize(nc, readBufferSize)
	if d := hs.ReadHeaderTimeout; d > 0 {
		_ = nc.SetReadDeadline(time.Now().Add(d))
	}
	isH2, err := sniffPreface(br)
	if err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	if isH2 {
		_ = h2.ServeConn(nc, br)
		return
	}
	cl.deliver(&bufferedConn{Conn: nc, r: br, decided: true})
}

// sniffPreface reads until the buffered bytes are, or cannot become,
// HTTP/2's client preface. It consumes nothing.
func sniffPreface(br *bufio.Reader) (bool, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if err != nil {
			return false, err
		}
		n = len(b)
		if !strings.HasPrefix(http2Preface, string(b)) {
			return false, nil
		}
		if n == len(http2Preface) {
			return true, nil
		}
		if m := br.Buffered(); m > n {
			n = min(m, len(http2Preface)) - 1
		}
	}
}

// connListener hands http.Server.Serve the connections routeConn gives
// it. Closing it (http.Server.Shutdown does) closes the real listener.
type connListener struct {
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *connListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *connListener) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *connListener) Close() error {
	l.fail(net.ErrClosed)
	return l.ln.Close()
}

func (l *connListener) Addr() net.Addr { return l.ln.Addr() }
