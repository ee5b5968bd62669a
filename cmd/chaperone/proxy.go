package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/client"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/pep"
	"github.com/chaperone-pdp/chaperone/proxy"
)

func newProxyCmd(e *env) *cobra.Command {
	var (
		addr, upstream, pdp, gatewayFile, publicURL, pdpTokenFile, logLevel string
		networkZone, deviceTrust, tlsCert, tlsKey                           string
		insecure                                                            bool
		pdpTimeout, upstreamTimeout, drain                                  time.Duration
		maxRequest, maxResponse                                             int64
		// Revocable end-user tokens: the revocation list in Redis.
		revocationsRedis string
		redisTimeout     time.Duration
		requireJTI       bool
	)
	cmd := &cobra.Command{
		Use:   "proxy --upstream URL --pdp URL --gateway FILE [--addr 127.0.0.1:8788]",
		Short: "Enforce decisions in front of a FHIR server (a reverse proxy that decides every request and every returned resource)",
		Long: `proxy serves the FHIR API of the server at --upstream under the gateway
file's fhirBase. Every request is mapped and its end user's token verified as
by the gateway doors (same gateway file), decided in the request phase, and
refused with a 401 or 403 OperationOutcome before it reaches the upstream when
denied. Every resource the upstream returns (reads, search pages with their
_include and _revinclude entries, history versions, batch and transaction
results) is decided in the resource phase with its own patient, owning
organization (tenantTagSystem) and meta.security, one BatchCheck per page;
denied ones are removed and each released one has its obligations (masks,
redactions) applied. Writes are decided with the body's and the stored
resource's attributes before they are forwarded. Every decision is made by
the PDP at --pdp, so every one is in its audit log.
SIGTERM or SIGINT stops it gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErrorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			logger := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			if upstream == "" || pdp == "" || gatewayFile == "" {
				return usageErrorf("--upstream, --pdp and --gateway are required")
			}
			up, err := url.Parse(upstream)
			if err != nil {
				return usageErrorf("--upstream %q: %v", upstream, err)
			}
			var pub *url.URL
			if publicURL != "" {
				if pub, err = url.Parse(publicURL); err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
					return usageErrorf("--public-url %q: want an http or https URL", publicURL)
				}
			}
			gcfg, err := gateway.Load(gatewayFile)
			if err != nil {
				return usageErrorf("--gateway: %v", err)
			}
			gopts := gateway.Options{RequireJTI: requireJTI}
			if revocationsRedis != "" {
				list, closeList, err := openRevocations(ctx, revocationsRedis, redisTimeout, logger)
				if err != nil {
					return err
				}
				defer closeList()
				gopts.Revocations = list
			} else {
				logger.Warn("no --redis: end users' tokens revoked with chaperone tokens revoke are accepted here until they expire")
			}
			gw, err := gateway.New(ctx, gcfg, gopts)
			if err != nil {
				return usageErrorf("--gateway: %v", err)
			}
			defer func() { _ = gw.Close(context.Background()) }()
			copts := []client.Option{client.WithTimeout(pdpTimeout), client.WithLogger(logger)}
			if pdpTokenFile != "" {
				b, err := os.ReadFile(pdpTokenFile)
				if err != nil {
					return usageErrorf("--pdp-token-file: %v", err)
				}
				copts = append(copts, client.WithBearerToken(strings.TrimSpace(string(b))))
			}
			dc, err := client.New(pdp, copts...)
			if err != nil {
				return usageErrorf("--pdp: %v", err)
			}
			p, err := proxy.New(proxy.Options{
				Upstream: up, Gateway: gw, Decider: dc, Apply: pep.Apply, PublicURL: pub,
				HTTPClient:       &http.Client{Timeout: upstreamTimeout, CheckRedirect: proxy.NoRedirects},
				MaxRequestBytes:  maxRequest,
				MaxResponseBytes: maxResponse,
				Logger:           logger,
				NetworkZone:      networkZone,
				DeviceTrust:      deviceTrust,
			})
			if err != nil {
				return usageErrorf("%v", err)
			}
			if (tlsCert == "") != (tlsKey == "") {
				return usageErrorf("--tls-cert and --tls-key go together")
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageErrorf("listen on %s: %v", addr, err)
			}
			if !isLoopback(ln.Addr()) && tlsCert == "" && !insecure {
				_ = ln.Close()
				return usageErrorf("--addr %s is not a loopback address: end users' tokens would cross the network in clear; give --tls-cert and --tls-key, or --insecure behind a TLS-terminating gateway", addr)
			}
			hs := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
			scheme := "http"
			if tlsCert != "" {
				scheme = "https"
			}
			fmt.Fprintf(e.stderr, "chaperone proxy listening on %s://%s\n", scheme, ln.Addr())
			logger.Info("proxying", slog.String("addr", ln.Addr().String()), slog.String("upstream", up.Redacted()), slog.String("pdp", pdp))
			errc := make(chan error, 1)
			go func() {
				if tlsCert != "" {
					errc <- hs.ServeTLS(ln, tlsCert, tlsKey)
					return
				}
				errc <- hs.Serve(ln)
			}()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8788", "address to listen on")
	f.StringVar(&upstream, "upstream", "", "FHIR base URL of the server behind the proxy, e.g. http://127.0.0.1:8080/fhir (required)")
	f.StringVar(&pdp, "pdp", "", "base URL of the Chaperone PDP (serve), e.g. http://127.0.0.1:8787 (required)")
	f.StringVar(&gatewayFile, "gateway", "", "gateway file (YAML: fhirBase, tokens, claims, purposeOfUse, resourcePhase, tenantTagSystem) (required)")
	f.StringVar(&publicURL, "public-url", "", "FHIR base URL clients use, for the links of answers (default: http://HOST of each request + fhirBase)")
	f.StringVar(&pdpTokenFile, "pdp-token-file", "", "file holding the proxy's bearer token for the PDP (its caller identity)")
	f.DurationVar(&pdpTimeout, "pdp-timeout", client.DefaultTimeout, "deadline of one decision call; past it the request is denied PDP_UNAVAILABLE")
	f.DurationVar(&upstreamTimeout, "upstream-timeout", proxy.DefaultTimeout, "deadline of one upstream call")
	f.Int64Var(&maxRequest, "max-request-bytes", proxy.DefaultMaxRequestBytes, "largest request body accepted")
	f.Int64Var(&maxResponse, "max-response-bytes", proxy.DefaultMaxResponseBytes, "largest upstream answer read (larger: 502)")
	f.DurationVar(&drain, "shutdown-timeout", 15*time.Second, "how long to wait for in-flight requests on shutdown")
	f.StringVar(&networkZone, "network-zone", "", "context.networkZone of every decision: the zone the proxy's clients are in, as this deployment vouches (e.g. clinic)")
	f.StringVar(&deviceTrust, "device-trust", "", "context.deviceTrust of every decision, as this deployment vouches (e.g. managed: the reference bundle lets only managed devices write)")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate chain (PEM)")
	f.StringVar(&tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	f.BoolVar(&insecure, "insecure", false, "allow a non-loopback --addr without TLS (behind a gateway that terminates TLS)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	// Revocable end-user tokens.
	f.StringVar(&revocationsRedis, "redis", "", "the Redis store of the PDP (URL as for serve --redis): end users' tokens on its revocation list are refused (401); without it they are accepted until they expire")
	f.DurationVar(&redisTimeout, "redis-timeout", 500*time.Millisecond, "bound of every Redis call (a token whose revocation state cannot be read is refused)")
	f.BoolVar(&requireJTI, "require-jti", false, "refuse end users' tokens without a jti")
	return cmd
}
