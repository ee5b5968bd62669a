package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

func newServeCmd(e *env) *cobra.Command {
	var (
		addr        string
		bundleDir   string
		consentsDir string
		logLevel    string
		drain       time.Duration
		rf          redisFlags
	)
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8787] [--bundle DIR] [--consents DIR]",
		Short: "Serve decisions over Connect, gRPC and gRPC-Web (HTTP/1.1 and h2c)",
		Long: `serve answers DecisionService (and the other services) on one port, over
HTTP/1.1 and cleartext HTTP/2. With no flags it listens on 127.0.0.1:8787,
decides with the embedded reference bundle and keeps consents in memory.
With --redis, consents, break-glass grants and vendor agreements live in
Redis, shared by every replica, with a local cache per replica invalidated
through Redis pub/sub; when Redis cannot be read, decisions about patients
are denied (CONSENT_UNAVAILABLE).
SIGTERM or SIGINT stops it gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErrorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			logger := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()

			v, err := validation.New()
			if err != nil {
				return err
			}
			var app *app
			if rf.url != "" {
				if consentsDir != "" {
					return usageErrorf("--consents seeds the in-memory store; with --redis import consents with chaperone consent import")
				}
				rs, closeRedis, err := openRedis(ctx, rf, os.Getenv, logger)
				if err != nil {
					return err
				}
				app, err = newAppWith(bundleDir, stores{consents: rs, grants: rs, agreements: rs, close: closeRedis}, logger)
				if err != nil {
					return err
				}
			} else {
				app, err = newApp(ctx, bundleDir, consentsDir, logger)
				if err != nil {
					return err
				}
			}
			srv := server.New(app.engine, v, append(app.serverOptions(), server.WithLogger(logger))...)

			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageErrorf("listen on %s: %v", addr, err)
			}
			hs := srv.HTTPServer()
			logger.Info("serving", slog.String("addr", ln.Addr().String()),
				slog.String("bundle_revision", app.engine.Bundle().Revision()),
				slog.Bool("loopback_only", isLoopback(ln.Addr())))
			fmt.Fprintf(e.stderr, "chaperone listening on http://%s\n", ln.Addr())

			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			logger.Info("shutting down", slog.Duration("drain", drain))
			sctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("shutdown: %w", err)
			}
			return app.close(sctx)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8787", "address to listen on")
	cmd.Flags().StringVar(&bundleDir, "bundle", "", "policy directory (default: the embedded reference bundle)")
	cmd.Flags().StringVar(&consentsDir, "consents", "", "seed the in-memory consent store from this directory or file of FHIR Consent JSON")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug logs one line per decision)")
	rf.register(cmd.Flags())
	cmd.Flags().DurationVar(&drain, "shutdown-timeout", 15*time.Second, "how long to wait for in-flight requests on shutdown")
	return cmd
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
