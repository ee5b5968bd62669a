package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/server"
)

// securityFlags are serve's flags for who may call Chaperone: TLS and
// mutual TLS, bearer JWTs, caller authorization, rate limits, request size,
// metrics and tracing.
type securityFlags struct {
	tlsCert, tlsKey, clientCA string
	insecure                  bool

	jwks         string
	issuer       string
	audience     []string
	algorithms   []string
	jwksMinGap   time.Duration
	maxTokenLife time.Duration

	callers string

	rateLimit       float64
	rateBurst       int
	maxRequestBytes int
	readTimeout     time.Duration

	metrics         bool
	otlpEndpoint    string
	otlpSampleRatio float64

	// selfAuthorized are path prefixes whose handler authorizes requests
	// itself (the web console); set by serve, not a flag.
	selfAuthorized []string
	// public are paths served without authentication beside the
	// defaults (the console's sign-in page); set by serve, not a flag.
	public []string
	// tokens and revocations (set by serve) make callers' tokens
	// revocable: the revocation list, --require-jti, introspection.
	tokens      *tokenFlags
	revocations callers.RevocationList
}

// addSecurityFlags registers the flags on fs.
func addSecurityFlags(fs *pflag.FlagSet) *securityFlags {
	f := &securityFlags{}
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate chain (PEM); re-read when it changes")
	fs.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fs.StringVar(&f.clientCA, "client-ca", "", "require mutual TLS: client certificates from these CAs (PEM); the caller is the certificate's SAN URI (SPIFFE id) or DNS name")
	fs.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback --addr without TLS or without caller authentication")
	fs.StringVar(&f.jwks, "jwks", "", "accept bearer JWTs signed by keys of this JWKS (https URL or file); needs --issuer and --audience")
	fs.StringVar(&f.issuer, "issuer", "", "required iss of bearer tokens")
	fs.StringSliceVar(&f.audience, "audience", nil, "accepted aud of bearer tokens (repeatable)")
	fs.StringSliceVar(&f.algorithms, "jwt-algorithms", nil, "allowed token signature algorithms (default RS*, PS*, ES*, EdDSA; never none or HS*)")
	fs.DurationVar(&f.jwksMinGap, "jwks-min-refresh", 0, "least time between JWKS refetches for an unknown key id (default 30s)")
	fs.DurationVar(&f.maxTokenLife, "max-token-lifetime", callers.DefaultMaxLifetime, "longest bearer token lifetime accepted (exp - iat, or exp - now without iat)")
	fs.StringVar(&f.callers, "callers", "", "caller authorization file (YAML): which callers may use which services and methods")
	fs.Float64Var(&f.rateLimit, "rate-limit", 0, "requests per second per caller (token bucket; 0: unlimited)")
	fs.IntVar(&f.rateBurst, "rate-burst", 0, "burst per caller (default: --rate-limit rounded up)")
	fs.IntVar(&f.maxRequestBytes, "max-request-bytes", 4<<20, "largest request message accepted")
	fs.DurationVar(&f.readTimeout, "read-timeout", server.DefaultReadTimeout, "longest time a request, headers and body, may take to arrive (a client trickling its body is cut off)")
	fs.BoolVar(&f.metrics, "metrics", true, "serve Prometheus metrics at GET /metrics")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export OpenTelemetry traces over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318 (default: tracing off)")
	fs.Float64Var(&f.otlpSampleRatio, "otlp-sample-ratio", 1, "share of new traces kept (a caller's sampled traceparent is always followed)")
	return f
}

// security is what serve needs from the flags.
type security struct {
	// options go to server.New after the app's own.
	options []server.Option
	// tls is the listener's configuration; nil serves cleartext (h2c).
	tls *tls.Config
	// metrics is where other packages' statistics are plugged in (nil
	// with --metrics=false).
	metrics *server.Metrics
	tracing *server.Tracing
	jwks    *callers.JWKS
	logger  *slog.Logger
	// h2c, when set, serves cleartext HTTP/2 connections with its own
	// HTTP/2 server (serve --h2c-server builtin).
	h2c *server.Server
}

// build checks the flags against addr and makes the guard, TLS, metrics and
// tracing. A non-loopback addr needs TLS and caller authentication unless
// --insecure is given.
func (f *securityFlags) build(ctx context.Context, addr string, logger *slog.Logger) (*security, error) {
	useTLS := f.tlsCert != "" || f.tlsKey != ""
	switch {
	case useTLS && (f.tlsCert == "" || f.tlsKey == ""):
		return nil, usageErrorf("--tls-cert and --tls-key go together")
	case f.clientCA != "" && !useTLS:
		return nil, usageErrorf("--client-ca needs --tls-cert and --tls-key")
	case f.jwks != "" && (f.issuer == "" || len(f.audience) == 0):
		return nil, usageErrorf("--jwks needs --issuer and --audience")
	case f.jwks == "" && (f.issuer != "" || len(f.audience) > 0 || len(f.algorithms) > 0):
		return nil, usageErrorf("--issuer, --audience and --jwt-algorithms need --jwks")
	case f.callers != "" && f.clientCA == "" && f.jwks == "":
		return nil, usageErrorf("--callers needs a way to authenticate callers: --client-ca or --jwks")
	case f.maxRequestBytes <= 0:
		return nil, usageErrorf("--max-request-bytes must be positive")
	case f.readTimeout <= 0:
		return nil, usageErrorf("--read-timeout must be positive")
	case f.maxTokenLife <= 0:
		return nil, usageErrorf("--max-token-lifetime must be positive")
	case f.jwks == "" && f.tokens != nil && (f.tokens.introspectionURL != "" || f.tokens.clientID != "" || f.tokens.clientSecretFile != ""):
		return nil, usageErrorf("--introspection-url introspects callers' bearer tokens: it needs --jwks")
	}
	authenticated := f.clientCA != "" || f.jwks != ""
	loopback := server.IsLoopbackAddr(addr)
	if !loopback && !f.insecure {
		if !useTLS {
			return nil, usageErrorf("--addr %s is not a loopback address: serve it with --tls-cert and --tls-key (and --client-ca or --jwks), or pass --insecure", addr)
		}
		if !authenticated {
			return nil, usageErrorf("--addr %s is not a loopback address and no caller authentication is configured: add --client-ca or --jwks, or pass --insecure", addr)
		}
	}

	s := &security{logger: logger}
	// Without authentication on loopback, only requests to a loopback
	// host from no browser origin but a loopback one are answered (DNS
	// rebinding, cross-origin pages).
	cfg := server.GuardConfig{Logger: logger, MTLS: f.clientCA != "", LoopbackHosts: loopback && !authenticated, SelfAuthorized: f.selfAuthorized}
	if len(f.public) > 0 {
		cfg.Public = append(server.DefaultPublicPaths(), f.public...)
	}
	if useTLS {
		tc, err := server.NewTLSConfig(server.TLSFiles{CertFile: f.tlsCert, KeyFile: f.tlsKey, ClientCAFile: f.clientCA})
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		s.tls = tc
	}
	if f.jwks != "" {
		keys, err := callers.NewJWKS(ctx, f.jwks, callers.JWKSConfig{MinRefresh: f.jwksMinGap})
		if err != nil {
			return nil, usageErrorf("--jwks: %v", err)
		}
		s.jwks = keys
		jcfg := callers.JWTConfig{Issuer: f.issuer, Audience: f.audience, Algorithms: f.algorithms, MaxLifetime: f.maxTokenLife, Revocations: f.revocations}
		if f.tokens != nil {
			jcfg.RequireJTI = f.tokens.requireJTI
			if jcfg.Introspection, err = f.tokens.introspector(); err != nil {
				return nil, err
			}
		}
		v, err := callers.NewJWTVerifier(keys, jcfg)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		cfg.JWT = v
	}
	if f.callers != "" {
		ac, err := callers.LoadAuthzConfig(f.callers)
		if err != nil {
			return nil, usageErrorf("--callers: %v", err)
		}
		if cfg.Authorizer, err = callers.NewAuthorizer(ac); err != nil {
			return nil, usageErrorf("--callers: %v", err)
		}
	}
	if f.rateLimit != 0 {
		l, err := callers.NewRateLimiter(callers.RateSpec{PerSecond: f.rateLimit, Burst: f.rateBurst})
		if err != nil {
			return nil, usageErrorf("--rate-limit: %v", err)
		}
		cfg.RateLimiter = l
	} else if f.callers != "" {
		// Per-caller rates from the file still apply.
		l, _ := callers.NewRateLimiter(callers.RateSpec{})
		cfg.RateLimiter = l
	}
	if f.metrics {
		s.metrics = server.NewMetrics()
		cfg.Metrics = s.metrics
		s.options = append(s.options, server.WithHTTPHandler("GET /metrics", s.metrics.Handler()), server.WithMetrics(s.metrics))
	}
	guard, err := server.NewGuard(cfg)
	if err != nil {
		return nil, err
	}
	var middleware []func(http.Handler) http.Handler
	if f.otlpEndpoint != "" {
		t, err := server.NewTracing(ctx, server.TracingConfig{Endpoint: f.otlpEndpoint, SampleRatio: f.otlpSampleRatio})
		if err != nil {
			return nil, usageErrorf("--otlp-endpoint: %v", err)
		}
		s.tracing = t
		middleware = append(middleware, t.Middleware) // outermost: refusals are traced too
	}
	middleware = append(middleware, guard.Middleware)
	s.options = append(s.options,
		server.WithMiddleware(middleware...),
		server.WithHandlerOptions(guard.HandlerOptions()...),
		server.WithHandlerOptions(connect.WithReadMaxBytes(f.maxRequestBytes)),
		server.WithReadTimeout(f.readTimeout),
	)

	logger.Info("caller security",
		slog.Bool("tls", useTLS),
		slog.Bool("mtls", f.clientCA != ""),
		slog.Bool("jwt", f.jwks != ""),
		slog.String("callers", f.callers),
		slog.Float64("rate_limit", f.rateLimit),
		slog.Int("max_request_bytes", f.maxRequestBytes),
		slog.Bool("metrics", f.metrics),
		slog.Bool("tracing", s.tracing != nil),
		slog.Bool("loopback_only", loopback))
	switch {
	case !useTLS && loopback:
		logger.Info("no TLS: serving on loopback only")
	case !loopback && (!useTLS || !authenticated):
		logger.Warn("serving a non-loopback address without TLS or caller authentication (--insecure)")
	}
	return s, nil
}

// scheme is "https" or "http", for the listening line.
func (s *security) scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// serve serves hs on ln, over TLS when configured. The http.Server's own
// errors (refused TLS handshakes) go to the JSON log.
func (s *security) serve(hs *http.Server, ln net.Listener) error {
	hs.ErrorLog = slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)
	if s.tls == nil && s.h2c != nil {
		return s.h2c.ServeH2C(hs, ln)
	}
	ln = server.BufferedListener(ln)
	if s.tls == nil {
		return hs.Serve(ln)
	}
	server.EnableTLS(hs, s.tls)
	return hs.ServeTLS(ln, "", "")
}

// close flushes traces and stops the key set refreshes.
func (s *security) close(ctx context.Context) error {
	var errs []error
	if s.jwks != nil {
		if err := s.jwks.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("jwks: %w", err))
		}
	}
	if s.tracing != nil {
		if err := s.tracing.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("tracing: %w", err))
		}
	}
	return errors.Join(errs...)
}
