package h2c

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaperone-pdp/chaperone/internal/warmstack"
)

// Server serves cleartext HTTP/2 connections with an http.Handler. The
// zero value of every field but Handler has a default.
type Server struct {
	// Handler serves every request.
	Handler http.Handler
	// Logger receives connection errors and handler panics (debug and
	// error level). Nil: nothing is logged.
	Logger *slog.Logger
	// ReadTimeout bounds how long a stream's request body may take to
	// arrive, counted from its HEADERS (0: 10 s).
	ReadTimeout time.Duration
	// WriteTimeout bounds one write to the connection (0: 30 s): a peer
	// that stops reading is disconnected.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection without streams after this long
	// (0: 2 min).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header list as HTTP/2 counts it
	// (names, values and 32 bytes per field; 0: 64 KiB). A larger one is
	// answered 431.
	MaxHeaderBytes int
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the
	// server advertises and enforces (0: 250).
	MaxConcurrentStreams uint32
	// StreamWindow is the flow-control window of every stream's request
	// body, and ConnWindow the connection's (0: 1 MiB each). They bound
	// the request data held for handlers that have not read it.
	StreamWindow, ConnWindow int32
	// Inline, if set, says which requests' handlers return without
	// waiting for the client (unary RPCs): on a connection whose client
	// waits for each answer they run on the goroutine that read them
	// (see conn.inlineCandidate). Their handlers must not wait for the
	// request's context to end.
	Inline func(*http.Request) bool
	// BaseContext, if set, gives the context of a connection's requests.
	BaseContext func(net.Conn) context.Context

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	drained  chan struct{} // closed when conns empties during shutdown
	workers  workers
	once     sync.Once
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.ReadTimeout <= 0 {
			s.ReadTimeout = 10 * time.Second
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = 30 * time.Second
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = 2 * time.Minute
		}
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = 64 << 10
		}
		if s.MaxConcurrentStreams == 0 {
			s.MaxConcurrentStreams = 250
		}
		if s.StreamWindow <= 0 {
			s.StreamWindow = 1 << 20
		}
		if s.ConnWindow <= 0 {
			s.ConnWindow = 1 << 20
		}
		s.conns = make(map[*conn]struct{})
		s.workers.max = int32(8 * runtime.GOMAXPROCS(0))
		s.workers.idle = time.Minute
		s.workers.work = make(chan *stream)
	})
}

// ErrServerClosed is returned by ServeConn after Shutdown.
var ErrServerClosed = errors.New("h2c: server closed")

// ServeConn serves one connection until it closes, reading from br
// (which reads from nc; its buffered bytes are the first of the
// connection, the client preface included) and writing to nc. It closes
// nc before it returns.
func (s *Server) ServeConn(nc net.Conn, br *bufio.Reader) error {
	s.init()
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		_ = nc.Close()
		return ErrServerClosed
	}
	c := newConn(s, nc, br)
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		if s.shutdown && len(s.conns) == 0 && s.drained != nil {
			close(s.drained)
			s.drained = nil
		}
		s.mu.Unlock()
	}()
	return c.serve()
}

// Shutdown stops new connections, sends every connection GOAWAY (the
// streams it has begun finish; later ones are refused, which a gRPC
// client retries elsewhere) and waits for the connections to close. When
// ctx ends first it closes them and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	var done chan struct{}
	if len(s.conns) > 0 {
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		done = s.drained
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(codeNo, false)
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *Server) logf(level slog.Level, msg string, args ...any) {
	if s.Logger != nil {
		s.Logger.Log(context.Background(), level, msg, args...)
	}
}

// Requests run on warm goroutines.
//
// A goroutine starts with a small stack; a request through connect-go,
// the caller checks, the engine and the audit record needs a deeper one,
// so a fresh goroutine per stream grew its stack two or three times,
// copying it each time. workers keeps a few goroutines whose stacks are
// already grown: a stream is handed to an idle one (one wake-up), or to a
// new one while there are fewer than max, or else to a plain goroutine.
type workers struct {
	work chan *stream // unbuffered: a send succeeds only to an idle worker
	n    atomic.Int32
	max  int32
	idle time.Duration
}

func (w *workers) run(st *stream) {
	select {
	case w.work <- st:
		return
	default:
	}
	if w.n.Add(1) > w.max {
		w.n.Add(-1)
		go st.run()
		return
	}
	go w.worker(st)
}

func (w *workers) worker(st *stream) {
	warmstack.Grow()
	defer w.n.Add(-1) // also when a handler ends its goroutine (runtime.Goexit)
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		st.run()
		idle.Reset(w.idle)
		select {
		case st = <-w.work:
		case <-idle.C:
			return
		}
	}
}
