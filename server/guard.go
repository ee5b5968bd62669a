package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chaperone-pdp/chaperone/callers"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// CallerFromContext returns the authenticated caller of the request ctx
// belongs to, as the [Guard] established it (mutual TLS identity or token
// subject; [callers.AnonymousID] when no authentication is configured).
// Handlers and recorders use it to attribute what a request did.
func CallerFromContext(ctx context.Context) (*callers.Caller, bool) {
	ri := requestInfoFrom(ctx)
	if ri == nil || ri.caller == nil {
		return nil, false
	}
	return ri.caller, true
}

// GuardConfig says how the [Guard] recognises and limits callers. With
// neither MTLS nor JWT, every request is let through as an anonymous caller
// (the loopback first-run experience), still with correlation ids, rate
// limits and metrics.
type GuardConfig struct {
	// MTLS takes the caller from the verified client certificate (the
	// listener must require one: see [TLSFiles].ClientCAFile).
	MTLS bool
	// JWT verifies bearer tokens. With MTLS too, a request needs a valid
	// certificate and, if it sends a token, a valid token; without a token
	// the certificate alone identifies it.
	JWT *callers.JWTVerifier
	// Authorizer decides which caller may call what; nil means the
	// defaults of an empty [AuthzConfig].
	Authorizer *callers.Authorizer
	// RateLimiter limits requests per caller; nil means unlimited.
	RateLimiter *callers.RateLimiter
	// Metrics records requests and decisions; nil means none.
	Metrics *Metrics
	// Logger logs refusals (warn) and one line per request (debug):
	// procedure, code, caller id, correlation id. Never bodies or tokens.
	Logger *slog.Logger
	// Public are paths served without authentication; nil means
	// [DefaultPublicPaths]().
	Public []string
	// LoopbackHosts refuses (permission_denied) every request whose Host
	// is not a loopback name or address, and every browser request whose
	// Origin is not a loopback origin. It is for a server on a loopback
	// address without caller authentication: a web page the operator
	// visits could otherwise reach it through DNS rebinding (a name of
	// the attacker's that resolves to 127.0.0.1) or a cross-origin fetch.
	LoopbackHosts bool
	// SelfAuthorized are path prefixes ("/console/") whose handler
	// authorizes each request itself with [Authorize], by the procedures
	// whose data it shows; the guard still authenticates, checks loopback
	// hosts and rate limits them.
	SelfAuthorized []string
}

// DefaultPublicPaths are served to anyone who can connect (with mutual TLS,
// only holders of a client certificate): health for load balancers and
// metrics for Prometheus.
func DefaultPublicPaths() []string {
	return []string{
		"/healthz",
		"/readyz",
		"/metrics",
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/Watch",
	}
}

// Guard is the HTTP middleware in front of every service. For each request
// it settles the correlation id (see [CorrelationID]), authenticates the
// caller (mutual TLS identity, bearer JWT), authorizes the procedure by its
// full name ([callers.Authorizer]; a door's HTTP route by the procedure name
// its [Route] declares), takes a token from the caller's bucket
// ([callers.RateLimiter]), and records metrics. Refusals are Connect errors in the
// caller's protocol (Connect, gRPC, gRPC-Web): unauthenticated,
// permission_denied, or resource_exhausted with a RetryInfo detail and a
// Retry-After header.
//
// Install it with [WithMiddleware](g.Middleware) and
// [WithHandlerOptions](g.HandlerOptions()...).
type Guard struct {
	mtls          bool
	jwt           *callers.JWTVerifier
	anonymous     bool
	authz         *callers.Authorizer
	limiter       *callers.RateLimiter
	metrics       *Metrics
	logger        *slog.Logger
	public        map[string]bool
	errw          *connect.ErrorWriter
	loopbackHosts bool
	self          []string
	anon          *callers.Caller // shared by every request when no authentication is configured
}

// NewGuard returns the guard for cfg.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	g := &Guard{
		mtls:          cfg.MTLS,
		jwt:           cfg.JWT,
		anonymous:     !cfg.MTLS && cfg.JWT == nil,
		authz:         cfg.Authorizer,
		limiter:       cfg.RateLimiter,
		metrics:       cfg.Metrics,
		logger:        cfg.Logger,
		public:        map[string]bool{},
		errw:          connect.NewErrorWriter(),
		anon:          &callers.Caller{ID: callers.AnonymousID, Anonymous: true},
		loopbackHosts: cfg.LoopbackHosts,
		self:          cfg.SelfAuthorized,
	}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	if g.authz == nil {
		a, err := callers.NewAuthorizer(callers.AuthzConfig{})
		if err != nil {
			return nil, err
		}
		g.authz = a
	}
	public := cfg.Public
	if public == nil {
		public = DefaultPublicPaths()
	}
	for _, p := range public {
		g.public[p] = true
	}
	return g, nil
}

// HandlerOptions are the Connect handler options the guard needs on every
// service: an interceptor that records each request's Connect code (and,
// with metrics, counts decisions).
func (g *Guard) HandlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithInterceptors(metricsInterceptor{g.metrics}, decisionCost{g})}
}

// Middleware wraps next in the guard.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{correlationID: g.correlationID(r), guard: g}
		w.Header().Set(HeaderRequestID, ri.correlationID)
		ctx := withRequestInfo(r.Context(), ri)
		r = r.WithContext(ctx)
		route, door := doorRouteFrom(ctx)
		if door {
			ri.procedure = route.procedure
		} else if _, ok := callers.ServiceOf(r.URL.Path); ok {
			ri.procedure = r.URL.Path
		}
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(attribute.String("chaperone.correlation_id", ri.correlationID))
		}

		if g.loopbackHosts {
			if err := loopbackRequest(r); err != nil {
				g.refuse(w, r, ri, start, connect.CodePermissionDenied, err)
				return
			}
		}
		if !g.public[r.URL.Path] {
			tokenHeader := "Authorization"
			if door && route.endUserToken {
				tokenHeader = HeaderCallerAuthorization
			}
			caller, err := g.authenticate(ctx, r, tokenHeader)
			if err != nil {
				g.refuse(w, r, ri, start, connect.CodeUnauthenticated, err)
				return
			}
			ri.caller = caller
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetAttributes(attribute.String("chaperone.caller", caller.ID))
			}
			if (ri.procedure != "" || !caller.Anonymous) && !g.selfAuthorized(r.URL.Path) {
				procedure := r.URL.Path
				if door {
					procedure = route.procedure
				}
				if err := g.authz.Authorize(caller, procedure); err != nil {
					g.refuse(w, r, ri, start, connect.CodePermissionDenied, err)
					return
				}
			}
			if g.limiter != nil {
				// One token per request here. A batch only needs one to
				// be there: it pays for all its decisions at once when its
				// body is read ([decisionCost]), so that a token spent
				// here is never lost to a batch refused later (under
				// contention batches would starve).
				ri.limitKey = callers.LimitKey(caller, r.RemoteAddr)
				spec := g.authz.RateFor(caller)
				var err error
				if ri.deferCost = batchProcedures[r.URL.Path] || door && route.batch; ri.deferCost {
					err = g.limiter.Peek(ri.limitKey, spec)
				} else {
					err = g.limiter.Allow(ri.limitKey, spec)
				}
				if err != nil {
					g.refuse(w, r, ri, start, connect.CodeResourceExhausted, err)
					return
				}
			}
		}

		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		g.finish(ctx, ri, start, sw)
	})
}

// selfAuthorized reports whether a handler authorizes requests to path
// itself ([GuardConfig].SelfAuthorized).
func (g *Guard) selfAuthorized(path string) bool {
	for _, p := range g.self {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func (g *Guard) correlationID(r *http.Request) string {
	if id := r.Header.Get(HeaderRequestID); validRequestID(id) {
		return id
	}
	// With tracing on, the span of this request carries the trace id of
	// the incoming traceparent, or a new one.
	if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return correlationID("", r.Header.Get(HeaderTraceparent))
}

// authenticate establishes the caller of r, whose bearer token (if any) is
// in the header tokenHeader.
func (g *Guard) authenticate(ctx context.Context, r *http.Request, tokenHeader string) (*callers.Caller, error) {
	if g.anonymous {
		return g.anon, nil
	}
	c := &callers.Caller{}
	if g.mtls {
		leaf := verifiedLeaf(r)
		if leaf == nil {
			return nil, fmt.Errorf("%w: verified client certificate required", callers.ErrUnauthenticated)
		}
		cc, err := callers.FromCertificate(leaf)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", callers.ErrUnauthenticated, err)
		}
		c = cc
	}
	if g.jwt != nil {
		raw, ok := bearerToken(r.Header.Get(tokenHeader))
		switch {
		case ok:
			claims, err := g.jwt.Verify(ctx, raw)
			if err != nil {
				return nil, err
			}
			c.Subject, c.ClientID = claims.Subject, claims.ClientID
			c.ID = claims.Subject
		case !g.mtls:
			return nil, &callers.TokenError{Reason: callers.ReasonMissingToken}
		}
	}
	if c.ID == "" {
		return nil, &callers.TokenError{Reason: callers.ReasonMissingClaim, Err: errors.New("no caller identity")}
	}
	return c, nil
}

// verifiedLeaf is the client certificate of r when it was verified against
// the client CAs, else nil.
func verifiedLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// errNotLoopback matches a request refused by [GuardConfig].LoopbackHosts.
var errNotLoopback = errors.New("not a loopback request")

// loopbackRequest checks that r names a loopback host and, when a browser
// sent it, comes from a loopback origin.
func loopbackRequest(r *http.Request) error {
	if !isLoopbackHost(hostOnly(r.Host)) {
		return fmt.Errorf("%w: host %q: this server answers requests to localhost only", errNotLoopback, r.Host)
	}
	if origin, ok := r.Header["Origin"]; ok {
		u, err := url.Parse(strings.Join(origin, ""))
		if err != nil || len(origin) != 1 || (u.Scheme != "http" && u.Scheme != "https") || !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("%w: origin %q: cross-origin browser requests are refused", errNotLoopback, strings.Join(origin, ","))
		}
	}
	return nil
}

// hostOnly strips the port of a Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// isLoopbackHost accepts localhost and loopback addresses.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// bearerToken returns the token of an "Authorization: Bearer …" header.
func bearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	return tok, tok != ""
}

// refuse answers r with a Connect error of code and logs why, without
// tokens or request bodies.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, ri *requestInfo, start time.Time, code connect.Code, cause error) {
	ctx := r.Context()
	var msg string
	var te *callers.TokenError
	var rl *callers.RateLimitError
	switch {
	case errors.As(cause, &te):
		msg = te.Reason
	case errors.As(cause, &rl):
		msg = "rate limit exceeded"
	case errors.Is(cause, errNotLoopback):
		msg = cause.Error()
	case code == connect.CodePermissionDenied:
		msg = "caller is not allowed to call " + r.URL.Path
	case errors.Is(cause, callers.ErrNoIdentity):
		msg = callers.ErrNoIdentity.Error()
	default:
		msg = "authentication required"
	}
	cerr := connect.NewError(code, errors.New(msg))
	if rl != nil {
		cerr = rateLimitError(rl)
		w.Header().Set("Retry-After", cerr.Meta().Get("Retry-After"))
	}
	level := slog.LevelWarn
	if rl != nil {
		level = slog.LevelInfo
	}
	callerID := ""
	if ri.caller != nil {
		callerID = ri.caller.ID
	}
	g.logger.LogAttrs(ctx, level, "caller refused",
		slog.String("code", code.String()),
		slog.String("procedure", r.URL.Path),
		slog.String("caller", callerID),
		slog.String("correlation_id", ri.correlationID),
		slog.String("remote_addr", r.RemoteAddr),
		slog.String("error", cause.Error()),
	)
	if g.errw.IsSupported(r) {
		_ = g.errw.Write(w, r, cerr)
	} else {
		http.Error(w, msg, connectHTTPStatus(code))
	}
	ri.code, ri.codeSet = code, true
	if g.metrics != nil {
		g.metrics.refused(code)
	}
	g.finish(ctx, ri, start, nil)
}

// rateLimitError is the resource_exhausted answer to rl, with a
// Retry-After header and a RetryInfo detail.
func rateLimitError(rl *callers.RateLimitError) *connect.Error {
	msg := "rate limit exceeded"
	if rl.Cost > rl.Burst {
		msg = fmt.Sprintf("rate limit exceeded: %d decisions in one request is more than the burst of %d", rl.Cost, rl.Burst)
	}
	cerr := connect.NewError(connect.CodeResourceExhausted, errors.New(msg))
	secs := int64((rl.RetryAfter + time.Second - 1) / time.Second)
	cerr.Meta().Set("Retry-After", strconv.FormatInt(secs, 10))
	if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(rl.RetryAfter)}); err == nil {
		cerr.AddDetail(d)
	}
	return cerr
}

// batchProcedures pay for their decisions in [decisionCost], not in the
// guard.
var batchProcedures = map[string]bool{
	"/chaperone.v1.DecisionService/BatchCheck": true,
}

// decisionCost makes rate limits count decisions, not requests: a request
// carrying n decisions (a BatchCheck of n) takes n tokens from the caller's
// bucket before it is decided, or is refused with resource_exhausted.
type decisionCost struct{ g *Guard }

var _ connect.Interceptor = decisionCost{}

// batch is a request message asking for several decisions.
type batch interface {
	GetRequests() []*chaperonev1.CheckRequest
}

func (dc decisionCost) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	if dc.g.limiter == nil {
		return next
	}
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		b, ok := req.Any().(batch)
		ri := requestInfoFrom(ctx)
		if !ok || ri == nil || ri.caller == nil || ri.limitKey == "" {
			return next(ctx, req)
		}
		n := len(b.GetRequests())
		cost := n
		if !ri.deferCost {
			cost-- // the guard took one
		}
		if cost > 0 {
			if err := dc.g.limiter.AllowN(ri.limitKey, cost, dc.g.authz.RateFor(ri.caller)); err != nil {
				var rl *callers.RateLimitError
				if !errors.As(err, &rl) {
					return nil, connect.NewError(connect.CodeInternal, errors.New("rate limit"))
				}
				dc.g.logger.LogAttrs(ctx, slog.LevelInfo, "caller refused",
					slog.String("code", connect.CodeResourceExhausted.String()),
					slog.String("procedure", req.Spec().Procedure),
					slog.String("caller", ri.caller.ID),
					slog.String("correlation_id", ri.correlationID),
					slog.Int("decisions", n),
					slog.String("error", err.Error()),
				)
				if dc.g.metrics != nil {
					dc.g.metrics.refused(connect.CodeResourceExhausted)
				}
				return nil, rateLimitError(rl)
			}
		}
		return next(ctx, req)
	}
}

func (decisionCost) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (decisionCost) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func connectHTTPStatus(c connect.Code) int {
	switch c {
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// finish records metrics and the debug access line of one request.
func (g *Guard) finish(ctx context.Context, ri *requestInfo, start time.Time, sw *statusWriter) {
	if !ri.codeSet && sw != nil {
		ri.code, ri.codeSet = httpStatusCode(sw.status, sw.Header())
	}
	elapsed := time.Since(start)
	if g.metrics != nil && ri.procedure != "" {
		g.metrics.observe(g.metrics.procedureLabel(ri.procedure), codeLabel(ri.code, ri.codeSet), elapsed)
	}
	if g.logger.Enabled(ctx, slog.LevelDebug) && ri.procedure != "" {
		callerID := ""
		if ri.caller != nil {
			callerID = ri.caller.ID
		}
		g.logger.LogAttrs(ctx, slog.LevelDebug, "request",
			slog.String("procedure", ri.procedure),
			slog.String("code", codeLabel(ri.code, ri.codeSet)),
			slog.String("caller", callerID),
			slog.String("correlation_id", ri.correlationID),
			slog.Duration("duration", elapsed),
		)
	}
}

// statusWriter remembers the status code; it keeps Flush and Unwrap so
// streaming and http.ResponseController still work through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
