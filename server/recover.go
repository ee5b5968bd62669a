package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"

	"connectrpc.com/connect"
)

// recoverer is the outermost layer of the [Server]'s handler: a panic in
// any middleware or handler is answered with Connect code internal (HTTP
// 500 for plain handlers) instead of tearing down the connection, counted
// (chaperone_handler_panics_total) and logged with the request's
// correlation id and stack. Nothing of the panic value reaches the caller.
type recoverer struct {
	next    http.Handler
	logger  *slog.Logger
	metrics *Metrics
	errw    *connect.ErrorWriter
}

// errInternal is what a caller is told about a panic.
var errInternal = errors.New("internal error")

func (rc *recoverer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &startedWriter{ResponseWriter: w}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared as net/http does
			panic(v)
		}
		buf := make([]byte, 8<<10)
		buf = buf[:runtime.Stack(buf, false)]
		// The guard echoes the correlation id in the response header as
		// soon as it has settled it; before that, the request's own.
		id := w.Header().Get(HeaderRequestID)
		if id == "" {
			id = correlationID(r.Header.Get(HeaderRequestID), r.Header.Get(HeaderTraceparent))
			w.Header().Set(HeaderRequestID, id)
		}
		rc.logger.LogAttrs(r.Context(), slog.LevelError, "handler panic",
			slog.String("path", r.URL.Path),
			slog.String("correlation_id", id),
			slog.String("panic", fmt.Sprint(v)),
			slog.String("stack", string(buf)),
		)
		if rc.metrics != nil {
			rc.metrics.panicked()
		}
		if tw.started {
			// Part of an answer is on the wire; the best left is to end
			// this response (net/http closes the stream, not the server).
			return
		}
		if rc.errw.IsSupported(r) {
			_ = rc.errw.Write(w, r, connect.NewError(connect.CodeInternal, errInternal))
			return
		}
		http.Error(w, errInternal.Error(), http.StatusInternalServerError)
	}()
	rc.next.ServeHTTP(tw, r)
}

// startedWriter notes whether a response has begun.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (s *startedWriter) WriteHeader(code int) {
	if code >= 200 {
		s.started = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *startedWriter) Write(b []byte) (int, error) {
	s.started = true
	return s.ResponseWriter.Write(b)
}

func (s *startedWriter) Flush() {
	s.started = true
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *startedWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
