package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server/internal/h2c"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Server is Chaperone's API as an http.Handler.
type Server struct {
	engine      *engine.Engine
	validator   *validation.Validator
	logger      *slog.Logger
	recorder    Recorder
	clock       requestClock
	metrics     *Metrics
	readTimeout time.Duration
	readiness   []readinessCheck
	mux         *http.ServeMux
	services    []string
	mounts      []mount
	handlerOpts []connect.HandlerOption
	decisions   *decisionService
	doors       []func(*Server) []Route
	routes      map[string]doorRoute // path → procedure of a door route

	// HTTP-level hooks (WithMiddleware, WithHTTPHandler); see hooks below New.
	middleware   []func(http.Handler) http.Handler
	httpHandlers []httpHandler
	handler      http.Handler // mux wrapped in middleware, recoverer and warmStacks
	inner        http.Handler // the same without warmStacks (h2c streams run on warm goroutines already)
	h2c          *h2c.Server
	h2cOnce      sync.Once
}

type mount struct {
	name string
	fn   func(opts ...connect.HandlerOption) (string, http.Handler)
}

// Option configures a [Server].
type Option func(*Server)

// WithLogger sets the server's logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.logger = l } }

// WithClockSkew sets how far a request's context.time may be from the
// server's clock (default [DefaultMaxClockSkew]); a time further away is
// invalid_argument naming context.time. now is the server's clock (nil:
// time.Now).
func WithClockSkew(maxSkew time.Duration, now func() time.Time) Option {
	return func(s *Server) {
		s.clock.maxSkew = maxSkew
		if now != nil {
			s.clock.now = now
		}
	}
}

// WithTrustedRequestTime accepts any context.time, for test harnesses and
// replays whose engine decides at the stated time
// ([engine.WithRequestTime]).
func WithTrustedRequestTime() Option { return func(s *Server) { s.clock.trusted = true } }

// WithRecorder audits every decision through r before it is returned.
func WithRecorder(r Recorder) Option { return func(s *Server) { s.recorder = r } }

// WithMetrics counts what the server itself sees (handler panics) in m.
func WithMetrics(m *Metrics) Option { return func(s *Server) { s.metrics = m } }

// DefaultReadTimeout is how long a request, headers and body, may take to
// arrive unless [WithReadTimeout] says otherwise.
const DefaultReadTimeout = 10 * time.Second

// WithReadTimeout bounds how long a request, headers and body, may take to
// arrive (the http.Server's ReadTimeout; for HTTP/2, per stream): a client
// trickling a large body cannot hold a connection and a handler open.
func WithReadTimeout(d time.Duration) Option { return func(s *Server) { s.readTimeout = d } }

// WithHandlerOptions adds Connect handler options (interceptors, limits) to
// every service.
func WithHandlerOptions(opts ...connect.HandlerOption) Option {
	return func(s *Server) { s.handlerOpts = append(s.handlerOpts, opts...) }
}

// WithService mounts another Connect service (path and handler from its
// generated New…Handler constructor) beside the DecisionService.
func WithService(name string, fn func(opts ...connect.HandlerOption) (string, http.Handler)) Option {
	return func(s *Server) { s.mounts = append(s.mounts, mount{name, fn}) }
}

// New returns the API handler deciding with eng.
func New(eng *engine.Engine, v *validation.Validator, opts ...Option) *Server {
	s := &Server{
		engine:      eng,
		validator:   v,
		logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		mux:         http.NewServeMux(),
		clock:       requestClock{now: time.Now, maxSkew: DefaultMaxClockSkew},
		readTimeout: DefaultReadTimeout,
	}
	for _, o := range opts {
		o(s)
	}
	s.decisions = &decisionService{engine: eng, recorder: s.recorder, logger: s.logger, clock: s.clock}
	s.mounts = append([]mount{{chaperonev1connect.DecisionServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		return chaperonev1connect.NewDecisionServiceHandler(s.decisions, opts...)
	}}}, s.mounts...)
	for _, m := range s.mounts {
		path, h := m.fn(s.connectOptions()...)
		s.mux.Handle(path, h)
		s.services = append(s.services, m.name)
	}

	s.mux.Handle(grpchealth.NewHandler(&healthChecker{server: s, services: s.services}))
	reflector := grpcreflect.NewStaticReflector(append([]string{grpchealth.HealthV1ServiceName}, s.services...)...)
	s.mux.Handle(grpcreflect.NewHandlerV1(reflector))
	s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	for _, h := range s.httpHandlers {
		s.mux.Handle(h.pattern, h.h)
	}
	s.mountDoors()
	s.handler = s.mux
	for i := len(s.middleware) - 1; i >= 0; i-- {
		s.handler = s.middleware[i](s.handler)
	}
	s.inner = &recoverer{next: s.handler, logger: s.logger, metrics: s.metrics, errw: connect.NewErrorWriter()}
	s.handler = newWarmStacks(s.inner)
	return s
}

// HTTP-level hooks, used by the caller security, metrics and tracing in
// auth.go, metrics.go and tracing.go.

type httpHandler struct {
	pattern string
	h       http.Handler
}

// WithMiddleware wraps the whole handler (every service, health, reflection
// and extra handlers) in mw. The first middleware given is the outermost.
func WithMiddleware(mw ...func(http.Handler) http.Handler) Option {
	return func(s *Server) { s.middleware = append(s.middleware, mw...) }
}

// WithHTTPHandler serves h at pattern (an http.ServeMux pattern such as
// "GET /metrics") beside the services.
func WithHTTPHandler(pattern string, h http.Handler) Option {
	return func(s *Server) { s.httpHandlers = append(s.httpHandlers, httpHandler{pattern, h}) }
}

// compressMinBytes is the smallest response the server compresses when the
// client accepts gzip. Decisions are a few hundred bytes: compressing them
// cost a third of a loopback Check (bench.BenchmarkCheckLoopback,
// compress=default vs compress=min1KiB) and saves a few dozen bytes.
// WithHandlerOptions(connect.WithCompressMinBytes(n)) overrides it.
const compressMinBytes = 1024

func (s *Server) connectOptions() []connect.HandlerOption {
	opts := append([]connect.HandlerOption{
		connect.WithInterceptors(validateInterceptor(s.validator)),
		connect.WithCompressMinBytes(compressMinBytes),
	}, jsonCodecs()...) // strict JSON: an unknown field is invalid_argument (codec.go)
	return append(opts, s.handlerOpts...)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if route, ok := s.routes[r.URL.Path]; ok {
		// The guard authorizes a door route by its procedure name.
		r = r.WithContext(context.WithValue(r.Context(), doorRouteKey{}, route))
	}
	s.handler.ServeHTTP(w, r)
}

// serveOnWarmStack is ServeHTTP for a request already on a goroutine
// with a grown stack (the h2c server's workers).
func (s *Server) serveOnWarmStack(w http.ResponseWriter, r *http.Request) {
	if route, ok := s.routes[r.URL.Path]; ok {
		r = r.WithContext(context.WithValue(r.Context(), doorRouteKey{}, route))
	}
	s.inner.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	b := s.engine.Bundle()
	if b == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "no policy bundle is active\n")
		return
	}
	io.WriteString(w, "ok revision="+b.Revision()+"\n")
}

// healthChecker reports SERVING while the server is ready (a bundle is
// active and every [WithReadiness] dependency is usable).
type healthChecker struct {
	server   *Server
	services []string
}

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !contains(h.services, req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("unknown service"))
	}
	if len(h.server.notReady(ctx)) > 0 {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validateInterceptor answers a request message that breaks its
// protovalidate rules with invalid_argument naming the field.
func validateInterceptor(v *validation.Validator) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if msg, ok := req.Any().(proto.Message); ok {
				if err := v.Validate(msg); err != nil {
					var verr *validation.Error
					if errors.As(err, &verr) {
						return nil, connect.NewError(connect.CodeInvalidArgument, verr)
					}
					return nil, connect.NewError(connect.CodeInternal, errors.New("request validation failed"))
				}
			}
			return next(ctx, req)
		}
	}
}

// HTTPServer returns an http.Server for s that speaks HTTP/1.1 and
// cleartext HTTP/2 (h2c), so Connect, gRPC and gRPC-Web clients all reach it
// on one port.
func (s *Server) HTTPServer() *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           s,
		Protocols:         &protocols,
		ReadHeaderTimeout: min(10*time.Second, s.readTimeout),
		ReadTimeout:       s.readTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}
