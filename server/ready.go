package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"
)

// A readiness check says whether a dependency the server decides with is
// usable: nil when it is, an error while it is not (the consent store does
// not answer, the audit sink is failing). Checks are cheap and bounded:
// each gets [ReadinessTimeout].
type readinessCheck struct {
	name  string
	check func(context.Context) error
}

// ReadinessTimeout bounds one readiness check.
const ReadinessTimeout = 2 * time.Second

// WithReadiness adds a dependency to readiness: while check returns an
// error, GET /readyz answers 503 naming it and the gRPC health service
// NOT_SERVING, so a load balancer sends decisions elsewhere. name is shown
// to the prober (never the error: it may carry addresses). The audit log's
// Healthy method fits as func(context.Context) error { return l.Healthy() }.
func WithReadiness(name string, check func(context.Context) error) Option {
	return func(s *Server) { s.readiness = append(s.readiness, readinessCheck{name, check}) }
}

// notReady returns the names of what is not ready ("bundle" while no bundle
// is active), or nil.
func (s *Server) notReady(ctx context.Context) []string {
	var down []string
	if s.engine.Bundle() == nil {
		down = append(down, "bundle")
	}
	for _, c := range s.readiness {
		cctx, cancel := context.WithTimeout(ctx, ReadinessTimeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			down = append(down, c.name)
		}
	}
	return down
}

// readyz answers 200 while the server can decide with every dependency,
// 503 naming the ones it cannot use otherwise. /healthz is liveness: it
// does not look at dependencies.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if down := s.notReady(r.Context()); len(down) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready: "+strings.Join(down, ", ")+"\n")
		return
	}
	io.WriteString(w, "ready revision="+s.engine.Bundle().Revision()+"\n")
}
