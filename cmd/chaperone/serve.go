package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/console"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

func newServeCmd(e *env) *cobra.Command {
	var (
		addr        string
		consentsDir string
		logLevel    string
		drain       time.Duration
		gatewayFile string
		pprofAddr   string
		h2cServer   string
		memoSize    int
		maxSkew     time.Duration
		trustTime   bool
		cl          consentLimitFlags
		rf          redisFlags
		bf          *bundleFlags
		sf          *securityFlags
		af          *auditFlags
		// The web console (--console) and what browsers need.
		consoleOn   bool
		corsOrigins []string
		tf          tokenFlags
	)
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8787] [--bundle DIR] [--consents DIR]",
		Short: "Serve decisions over Connect, gRPC and gRPC-Web (HTTP/1.1 and h2c)",
		Long: `serve answers DecisionService (and the other services) on one port, over
HTTP/1.1 and cleartext HTTP/2. With no flags it listens on 127.0.0.1:8787,
decides with the embedded reference bundle and keeps consents in memory.
With --redis, consents, break-glass grants, vendor agreements and treating
relationships (RelationshipService) live in
Redis, shared by every replica, with a local cache per replica invalidated
through Redis pub/sub; when Redis cannot be read, decisions about patients
are denied (CONSENT_UNAVAILABLE).
The same port serves the OpenID AuthZEN 1.0 door (POST /access/v1/evaluation
and /access/v1/evaluations, GET /.well-known/authzen-configuration), decided
and audited as Check; with --callers, grant it as
authzen.v1.AccessEvaluationService.
With --gateway FILE it also serves the forward-auth door of nginx
auth_request, Traefik ForwardAuth and Caddy forward_auth (any method on
/authz/forward), which verifies the end user's token and decides the
request the gateway is about to forward; with --callers, grant it as
chaperone.gateway.v1.ForwardAuthService. The same file serves Envoy's
ext_authz v3 door (envoy.service.auth.v3.Authorization/Check over gRPC,
grant it by that service name).
Every bearer token it accepts (callers' with --jwks, end users' at the
gateway doors) is refused once it is on the token revocation list of its
store (chaperone tokens revoke; shared by every replica with --redis).
SIGTERM or SIGINT stops it gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErrorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			logger := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()

			// What was opened is closed on every way out, in reverse order:
			// on shutdown after the HTTP server has drained, so the audit
			// log gets every answered decision before it closes.
			var closers []func(context.Context) error
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), drain)
				defer cancel()
				errs := []error{err}
				for i := len(closers) - 1; i >= 0; i-- {
					errs = append(errs, closers[i](cctx))
				}
				err = errors.Join(errs...)
			}()

			if maxSkew <= 0 {
				return usageErrorf("--max-clock-skew must be positive")
			}
			if h2cServer != "builtin" && h2cServer != "net/http" {
				return usageErrorf("--h2c-server %q: want builtin or net/http", h2cServer)
			}
			// Revocable tokens: the verifiers of callers' and end users'
			// tokens read the revocation list of the store opened below.
			revocations := &lateRevocations{}
			sf.tokens, sf.revocations = &tf, revocations
			// The gateway file and its end users' key set are checked
			// before anything is opened.
			var gw *gateway.Gateway
			// The engine the gateway reads the active bundle's cacheTtl
			// from, for the attributes it fetches; set once it exists.
			var ttlEngine atomic.Pointer[engine.Engine]
			if gatewayFile != "" {
				gcfg, err := gateway.Load(gatewayFile)
				if err != nil {
					return usageErrorf("--gateway: %v", err)
				}
				if gw, err = gateway.New(ctx, gcfg, gateway.Options{CacheTTL: func() time.Duration { return bundleCacheTTL(ttlEngine.Load()) },
					Revocations: revocations, RequireJTI: tf.requireJTI}); err != nil {
					return usageErrorf("--gateway: %v", err)
				}
				closers = append(closers, gw.Close)
			}
			limits, err := cl.limits(maxSkew, sf.maxRequestBytes)
			if err != nil {
				return err
			}
			rf.limits = limits
			engineOpts := []engine.Option{engine.WithMemo(memoSize)}
			clockOpt := server.WithClockSkew(maxSkew, nil)
			if trustTime {
				logger.Warn("--trust-request-time: decisions are made at the time each request states; callers can step around every expiry, period and office hour. For test harnesses and replays only.")
				engineOpts = append(engineOpts, engine.WithRequestTime())
				clockOpt = server.WithTrustedRequestTime()
			}
			v, err := validation.New()
			if err != nil {
				return err
			}
			if consoleOn {
				// The console authorizes each page by the procedures it shows;
				// with bearer tokens, a browser signs in on a public page.
				sf.selfAuthorized = []string{console.Prefix}
				if sf.jwks != "" {
					sf.public = []string{console.SignInPath}
				}
			}
			cors, err := server.NewCORS(corsOrigins)
			if err != nil {
				return usageErrorf("--cors-origin: %v", err)
			}
			if sf.clientCA == "" && sf.jwks == "" {
				// Unauthenticated, the server answers loopback pages only.
				for _, o := range corsOrigins {
					if u, _ := url.Parse(o); !loopbackHostname(u.Hostname()) {
						return usageErrorf("--cors-origin %s: without caller authentication (--client-ca or --jwks) only loopback origins can call", o)
					}
				}
			}
			sec, err := sf.build(ctx, addr, logger)
			if err != nil {
				return err
			}
			closers = append(closers, sec.close)
			var app *app
			// What the server needs to decide, for GET /readyz and the
			// gRPC health service.
			var readiness []server.Option
			if rf.url != "" {
				if consentsDir != "" {
					return usageErrorf("--consents seeds the in-memory store; with --redis import consents with chaperone consent import")
				}
				var rerrs redisErrors
				rs, closeRedis, pingRedis, err := openRedis(ctx, rf, os.Getenv, logger, &rerrs)
				if err != nil {
					return err
				}
				readiness = append(readiness, server.WithReadiness("consent-store", pingRedis))
				if m := sec.metrics; m != nil {
					_ = m.ConsentCache(func() uint64 { return rs.Stats().Hits }, func() uint64 { return rs.Stats().Misses })
					_ = m.RedisErrors(rerrs.n.Load)
				}
				app, err = newAppWith("", stores{consents: rs, grants: rs, agreements: rs, revocations: rs, relationships: rs, close: closeRedis}, logger, engineOpts...)
				if app != nil {
					ttlEngine.Store(app.engine)
				}
				if err != nil {
					_ = closeRedis(context.Background())
					return err
				}
				app.consentMaxBytes = limits.MaxBytes
			} else {
				app, err = newApp(ctx, "", consentsDir, logger, limits, engineOpts...)
				if app != nil {
					ttlEngine.Store(app.engine)
				}
				if err != nil {
					return err
				}
			}
			closers = append(closers, app.close)
			revocations.set(app.revocations)
			// The decision log goes where it is told: --audit-file (or its
			// default) unless --audit-redis names a stream, both when both
			// are given; --redis alone does not move it (the file given
			// was silently ignored for a Redis stream).
			auditLog, err := af.openLogs(ctx, logger, cmd.Flags().Changed("audit-file"))
			if err != nil {
				return err
			}
			closers = append(closers, func(ctx context.Context) error {
				if err := auditLog.Close(ctx); err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				return nil
			})
			app.changes = auditLog
			// Retention (--audit-retention): prunes the file log on schedule.
			stopRetention, err := af.startRetention(ctx, auditLog, logger, af.redisURL == "" || cmd.Flags().Changed("audit-file"))
			if err != nil {
				return err
			}
			defer stopRetention()
			bf.record = recordActivation(auditLog)
			// The embedded bundle is active; --bundle replaces it before
			// the first request and is watched from then on.
			bundleOpt, stopBundles, err := bf.start(ctx, app.engine, logger)
			if err != nil {
				return err
			}
			defer stopBundles()
			if m := sec.metrics; m != nil {
				loader := bf.loader
				_ = m.Bundle(func() string { return loader.Status().Revision }, func() uint64 { return loader.Status().Failures })
				_ = m.AuditQueue(func() int { return auditLog.Stats().QueueDepth }, func() uint64 { return auditLog.Stats().Dropped })
				_ = m.GaugeFunc("chaperone_audit_halted", "1 when the audit writer stopped for good (its log was truncated, deleted or replaced under it): every decision is denied until a restart.", func() float64 {
					if auditLog.Stats().Halted {
						return 1
					}
					return 0
				})
				_ = m.CounterFunc("chaperone_audit_anchor_errors_total", "Failed writes of a checkpoint head to --audit-anchor.", func() float64 { return float64(auditLog.Stats().AnchorErrors) })
			}
			readiness = append(readiness, server.WithReadiness("audit", func(context.Context) error { return auditLog.Healthy() }))
			opts := append(app.serverOptions(), bundleOpt, server.WithRecorder(auditLog), server.WithLogger(logger), clockOpt)
			opts = append(opts, readiness...)
			// Outermost (before the guard's): CORS answers preflights, which
			// carry no credentials; gRPC-Web text is decoded to gRPC-Web.
			opts = append(opts, server.WithMiddleware(cors.Middleware, server.GRPCWebText(int64(sf.maxRequestBytes)/3*4+8)))
			if consoleOn && sf.jwks != "" {
				opts = append(opts, server.WithMiddleware(console.BearerCookie))
			}
			opts = append(opts, server.WithDoor(authzenDoor(logger, int64(sf.maxRequestBytes))))
			if gw != nil {
				opts = append(opts, server.WithDoor(forwardDoor(gw, logger)))
				opts = append(opts, server.WithGRPCDoor(extauthz.Service, extauthzDoor(gw, logger)))
			}
			// AuditService reads the log this server writes and records
			// reviews on it.
			auditSrc, auditKeys, closeSrc, err := af.source(cmd.Flags().Changed("audit-file"))
			if err != nil {
				return err
			}
			closers = append(closers, func(context.Context) error { closeSrc(); return nil })
			auditFields, err := loadFieldKeys(af.fieldKeyFile)
			if err != nil {
				return err
			}
			auditSvc := server.NewAuditService(auditSrc, auditLog, server.WithAuditKeys(auditKeys...),
				server.WithAuditFieldKeys(auditFields), server.WithAuditLogger(logger),
				server.WithAuditPruned(func() ([]audit.PruneAnchor, error) { return af.pruneAnchors(cmd.Flags().Changed("audit-file")) }))
			opts = append(opts, server.WithAuditService(auditSvc))
			// The console decides through the server it is mounted on: it
			// is made once the server exists.
			var con atomic.Pointer[console.Console]
			if consoleOn {
				opts = append(opts, server.WithHTTPHandler(console.Prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					con.Load().ServeHTTP(w, r)
				})))
			}
			srv := server.New(app.engine, v, append(opts, sec.options...)...)
			if consoleOn {
				c, err := console.New(console.Config{
					Decider: srv, Audit: auditSvc, Consents: app.consentSvc, Grants: app.accessSvc, Relationships: app.relationshipSvc,
					Bundles: bf.loader, Validator: v, Logger: logger,
					Engine: func(b *engine.Bundle) *engine.Engine {
						e := engine.New(engine.StoreConsents(app.consents), engine.WithGrants(app.grants),
							engine.WithAgreements(app.agreements), engine.WithRelationships(app.relationships),
							engine.WithLogger(logger), engine.WithMemo(0))
						e.Activate(b)
						return e
					},
					DiffConsents: engine.StoreConsents(app.consents),
				})
				if err != nil {
					return err
				}
				con.Store(c)
				logger.Info("web console", slog.String("path", console.Prefix))
			}

			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageErrorf("listen on %s: %v", addr, err)
			}
			if pprofAddr != "" {
				stop, err := servePprof(pprofAddr, logger)
				if err != nil {
					_ = ln.Close()
					return err
				}
				closers = append(closers, stop)
			}
			hs := srv.HTTPServer()
			logger.Info("serving", slog.String("addr", ln.Addr().String()),
				slog.String("bundle_revision", app.engine.Bundle().Revision()),
				slog.Bool("loopback_only", isLoopback(ln.Addr())))
			fmt.Fprintf(e.stderr, "chaperone listening on %s://%s\n", sec.scheme(), ln.Addr())

			if h2cServer == "builtin" {
				sec.h2c = srv
			}
			errc := make(chan error, 1)
			go func() { errc <- sec.serve(hs, ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			logger.Info("shutting down", slog.Duration("drain", drain))
			sctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			// In-flight decisions finish here; the deferred closers then
			// drain their audit records and close the stores.
			if err := srv.Shutdown(sctx, hs); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8787", "address to listen on")
	cmd.Flags().StringVar(&gatewayFile, "gateway", "", "serve the forward-auth door (/authz/forward) and the Envoy ext_authz door with this gateway file (YAML: fhirBase, tokens, claims, purposeOfUse, resourcePhase, tenantTagSystem, attributes)")
	bf = addBundleFlags(cmd.Flags())
	sf = addSecurityFlags(cmd.Flags())
	af = addAuditFlags(cmd.Flags())
	cmd.Flags().StringVar(&consentsDir, "consents", "", "seed the in-memory consent store from this directory or file of FHIR Consent JSON")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug logs one line per decision)")
	rf.register(cmd.Flags())
	cl.register(cmd.Flags())
	// Revocable tokens: --require-jti, --introspection-*.
	tf.register(cmd.Flags())
	cmd.Flags().DurationVar(&maxSkew, "max-clock-skew", server.DefaultMaxClockSkew, "how far a request's context.time may be from the server's clock (invalid_argument beyond); decisions are made at the server's time")
	cmd.Flags().BoolVar(&trustTime, "trust-request-time", false, "decide at the time each request states (context.time) instead of the server's: for test harnesses and replays only, never in production")
	cmd.Flags().IntVar(&memoSize, "memo-size", engine.DefaultMemoSize, "policy outcomes remembered per bundle, keyed on every input a policy can see (0 turns the memo off)")
	// Cleartext HTTP/2 (gRPC, Envoy ext_authz): which HTTP/2 server serves it.
	cmd.Flags().StringVar(&h2cServer, "h2c-server", "builtin", "the HTTP/2 server of cleartext HTTP/2 connections (gRPC, Envoy ext_authz): builtin (Chaperone's own, one write per answer) or net/http (Go's); TLS connections always use Go's")
	cmd.Flags().StringVar(&pprofAddr, "pprof-addr", "", "serve Go's runtime profiles (/debug/pprof/) on this loopback address; off when empty")
	// The web console.
	cmd.Flags().BoolVar(&consoleOn, "console", false, "serve the web console at /console/ (playground, decisions, break-glass review, patient view, bundle); pages need the grants of the services they show")
	cmd.Flags().StringSliceVar(&corsOrigins, "cors-origin", nil, "let web pages of this exact origin (scheme://host[:port]; repeatable) call the services from a browser: preflights answered, answers readable, credentials allowed")
	cmd.Flags().DurationVar(&drain, "shutdown-timeout", 15*time.Second, "how long to wait for in-flight requests on shutdown")
	return cmd
}

// authzenDoor serves the AuthZEN 1.0 door (authzen package) on the API
// port, deciding through the server as Check does; the guard authorizes
// its routes as authzen.Service's methods.
func authzenDoor(logger *slog.Logger, maxBytes int64) func(*server.Server) []server.Route {
	return func(s *server.Server) []server.Route {
		h := authzen.New(s, authzen.WithLogger(logger), authzen.WithMaxBytes(maxBytes))
		var routes []server.Route
		for _, r := range h.Routes() {
			routes = append(routes, server.Route{Pattern: r.Pattern, Procedure: r.Procedure, Handler: r.Handler, Batch: r.Batch})
		}
		return routes
	}
}

// forwardDoor serves the forward-auth door (gateway package) on the API
// port, deciding through the server as Check does.
func forwardDoor(gw *gateway.Gateway, logger *slog.Logger) func(*server.Server) []server.Route {
	return func(s *server.Server) []server.Route {
		d := gateway.NewDoor(gw, s, logger)
		return []server.Route{{Pattern: d.Pattern(), Procedure: gateway.ForwardProcedure, Handler: d, EndUserToken: true}}
	}
}

// extauthzDoor serves the Envoy ext_authz v3 door (extauthz package) on
// the API port, mapping with the gateway file and deciding through the
// server as Check does.
func extauthzDoor(gw *gateway.Gateway, logger *slog.Logger) func(*server.Server) func(...connect.HandlerOption) (string, http.Handler) {
	return func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
		return extauthz.New(extauthz.FromGateway(gw), s, logger).Handler
	}
}

// recordActivation puts every bundle activation on the audit chain before
// the bundle decides (revision, digest, signers, source, the revision it
// replaces and whether it is a downgrade), and its outcome after.
func recordActivation(l server.ChangeRecorder) bundles.ActivationRecorder {
	return func(ctx context.Context, next, prev bundles.Status) (func(), error) {
		c := audit.Change{
			ID: audit.NewChangeID(), Action: audit.ChangeBundleActivate,
			Revision: next.Revision, BundleName: next.Name, Digest: next.Digest, Signers: next.Signers,
			Source: next.Source, PreviousRevision: prev.Revision, Downgrade: next.Downgrade,
		}
		outcome := audit.Change{ID: c.ID, Action: c.Action, Outcome: audit.OutcomeFailed, Error: "unavailable"}
		if err := l.Change(ctx, audit.CallerBundleLoader, c); err != nil {
			// The record may still be stored later: say the activation failed.
			_ = l.ChangeOutcome(ctx, audit.CallerBundleLoader, outcome)
			return nil, err
		}
		return func() {
			outcome.Outcome, outcome.Error = audit.OutcomeApplied, ""
			_ = l.ChangeOutcome(context.WithoutCancel(ctx), audit.CallerBundleLoader, outcome)
		}, nil
	}
}

// servePprof serves net/http/pprof on a loopback address of its own, apart
// from the API port and its authentication: profiles show memory contents,
// so any other address is refused.
func servePprof(addr string, logger *slog.Logger) (func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageErrorf("--pprof-addr %s: %v", addr, err)
	}
	if !isLoopback(ln.Addr()) {
		_ = ln.Close()
		return nil, usageErrorf("--pprof-addr %s: profiles are served on loopback only", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	logger.Info("serving profiles", slog.String("addr", ln.Addr().String()))
	return func(context.Context) error { return hs.Close() }, nil
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// bundleCacheTTL is the cacheTtl of eng's active bundle; 0 without one.
func bundleCacheTTL(eng *engine.Engine) time.Duration {
	if eng == nil || eng.Bundle() == nil {
		return 0
	}
	d, err := time.ParseDuration(eng.Bundle().Manifest().CacheTTL)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// loopbackHostname reports whether h is localhost or a loopback address.
func loopbackHostname(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
