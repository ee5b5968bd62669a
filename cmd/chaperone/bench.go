package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/bench/load"
)

func newBenchCmd(e *env) *cobra.Command {
	var (
		addr, requestsFile, scenario, protocol, format, target, opaPath string
		duration, warmup, timeout                                       time.Duration
		concurrency, batch, connections                                 int
		idsFile, gatewayFile, gatewayKey, writeGateway                  string
		rate                                                            float64
		maxRequests                                                     int64
		serverPID                                                       int
		seed, quiet, distinct                                           bool
	)
	cmd := &cobra.Command{
		Use:   "bench --addr ADDR (--requests FILE | --scenario NAME) [--duration 30s] [--concurrency N] [--rate R]",
		Short: "Load a decision point with CheckRequests and report throughput and latency",
		Long: `bench sends CheckRequests to a running decision point and reports throughput,
latency percentiles (p50, p90, p99, p99.9, max; HDR histogram), errors by code
and decision counts. A progress line goes to stderr every second.

Without --rate it runs closed loop: each of --concurrency workers sends its
next request when the previous answer arrived. With --rate R it runs open
loop: request n is due at start + n/R seconds and its latency is measured from
that intended time, so a stalled server is seen in the tail (no coordinated
omission); --concurrency is then the number of requests that may be in flight.
Every run stops after --warmup + --duration or --max-requests, whichever first.

--batch N sends BatchCheck of N requests instead of Check; --decision-ids
FILE writes the id of every decision answered (not AUDIT_UNAVAILABLE), one
per line, so that after killing the server the ids can be compared with
its audit log (see the audit section of the README).

Requests come from --requests FILE (CheckRequests in JSON, one per line, sent
in turn) or a built-in --scenario (` + strings.Join(load.Scenarios(), ", ") + `). The
consents a scenario depends on are stored through the target's ConsentService
(Put) before the run; --seed-consents=false skips that (seed them yourself,
e.g. with serve --consents DIR).

--protocol ext-authz asks Envoy's ext_authz v3 Check (grpc-go over h2c) and
--protocol forward the forward-auth door (GET /authz/forward as nginx's
auth_request sends it) about the FHIR REST request each CheckRequest is the
request-phase decision of (GET /fhir/Patient/52/Observation for a search in
Patient/52's compartment, GET /fhir/Observation/o1 for a read), with an end
user's bearer token whose claims are the request's subject and the purpose
of use in the gateway's header: the door then decides the very CheckRequest
a Check of the same request does. The tokens are signed by --gateway-key (a
private JWK whose public key is in the key set of --gateway, the server's
gateway file). The built-in scenario gateway is such a request mix.
--write-gateway DIR writes a new key, its key set and a gateway file into DIR
and exits:

  chaperone bench --write-gateway gw
  chaperone serve --gateway gw/gateway.yaml &
  chaperone bench --scenario gateway --protocol ext-authz --gateway gw/gateway.yaml --gateway-key gw/end-user-key.json

--server-pid PID reads the server's CPU time (utime+stime of /proc/PID/stat,
all its threads) when the warmup ends and after the last answer, and reports
it divided by the requests answered in that window ("server cpu" in text,
serverCpuMicrosPerRequest and serverCpuSeconds in JSON). The resolution is a
clock tick (10 ms): measure for seconds, not milliseconds.

--target opa drives OPA's REST data API instead: each request is posted as
{"input": <request JSON>} to --opa-path, whose value must be an object with a
"decision" field ("ALLOW" or "DENY").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if writeGateway != "" {
				gw, key, err := load.WriteGatewayFiles(writeGateway)
				if err != nil {
					return fmt.Errorf("--write-gateway: %w", err)
				}
				fmt.Fprintf(e.stdout, "gateway file %s\nend-user key %s\n", gw, key)
				return nil
			}
			if (requestsFile == "") == (scenario == "") {
				return usageErrorf("give exactly one of --requests FILE and --scenario NAME")
			}
			if format != "text" && format != "json" {
				return usageErrorf("--format %q: want text or json", format)
			}
			cfg := load.Config{
				Addr: addr, Target: load.Target(target), Protocol: load.Protocol(protocol), OPAPath: opaPath,
				Duration: duration, Warmup: warmup, Concurrency: concurrency, Rate: rate,
				MaxRequests: maxRequests, Timeout: timeout, DistinctIDs: distinct, Batch: batch,
				Connections: connections, ServerPID: serverPID,
			}
			if (gatewayFile == "") != (gatewayKey == "") {
				return usageErrorf("give both --gateway and --gateway-key, or neither")
			}
			if gatewayFile != "" {
				g, err := load.LoadGateway(gatewayFile, gatewayKey)
				if err != nil {
					return usageErrorf("--gateway: %v", err)
				}
				cfg.Gateway = g
			}
			if idsFile != "" {
				f, err := os.Create(idsFile)
				if err != nil {
					return usageErrorf("--decision-ids: %v", err)
				}
				defer f.Close()
				cfg.DecisionIDs = f
			}
			if !quiet {
				cfg.Progress = e.stderr
			}
			if cfg.Target == load.TargetOPA && protocol == "" {
				cfg.Protocol = load.ProtocolJSON
			}
			var consents [][]byte
			if scenario != "" {
				sc, err := load.LookupScenario(scenario)
				if err != nil {
					return usageErrorf("--scenario: %v", err)
				}
				cfg.Requests, consents = sc.Requests, sc.Consents
			} else {
				f, err := os.Open(requestsFile)
				if err != nil {
					return usageErrorf("--requests: %v", err)
				}
				cfg.Requests, err = load.ReadRequests(f)
				f.Close()
				if err != nil {
					return usageErrorf("--requests %s: %v", requestsFile, err)
				}
			}
			if seed && len(consents) > 0 && cfg.Target != load.TargetOPA {
				if err := load.SeedConsents(cmd.Context(), addr, consents); err != nil {
					return fmt.Errorf("seed consents: %w", err)
				}
			}
			res, err := load.Run(cmd.Context(), cfg)
			if res == nil {
				return usageErrorf("%v", err)
			}
			if format == "json" {
				if werr := res.WriteJSON(e.stdout); werr != nil {
					return werr
				}
			} else if werr := res.WriteText(e.stdout); werr != nil {
				return werr
			}
			if err != nil && !errors.Is(err, cmd.Context().Err()) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8787", "address (host:port or URL) of the server under load")
	f.StringVar(&requestsFile, "requests", "", "file of CheckRequests in JSON, one per line")
	f.StringVar(&scenario, "scenario", "", "built-in scenario: "+strings.Join(load.Scenarios(), ", "))
	f.DurationVar(&duration, "duration", 30*time.Second, "measured duration")
	f.DurationVar(&warmup, "warmup", 0, "time to send before measuring")
	f.IntVar(&concurrency, "concurrency", 8, "workers (connections; in open loop, requests in flight)")
	f.Float64Var(&rate, "rate", 0, "open loop: requests per second (0: closed loop)")
	f.Int64Var(&maxRequests, "max-requests", load.DefaultMaxRequests, "stop after this many requests")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "timeout of one request")
	f.StringVar(&protocol, "protocol", "", "connect, grpc, json (Connect JSON), authzen (AuthZEN evaluation), ext-authz (Envoy ext_authz) or forward (forward-auth) (default connect; json for --target opa)")
	f.StringVar(&format, "format", "text", "text or json")
	f.StringVar(&target, "target", "chaperone", "chaperone or opa")
	f.StringVar(&opaPath, "opa-path", "/v1/data/chaperone/bench/decision", "with --target opa: the data API path of the decision")
	f.BoolVar(&seed, "seed-consents", true, "store the scenario's consents through ConsentService.Put before the run")
	f.BoolVar(&distinct, "distinct-ids", false, "give every request a resource id of its own (memos keyed on the whole request then miss, as in real traffic)")
	f.BoolVar(&quiet, "quiet", false, "no progress lines")
	f.IntVar(&batch, "batch", 0, "send BatchCheck of this many requests instead of Check (a request of the report is one batch)")
	f.StringVar(&idsFile, "decision-ids", "", "write the decision id of every answered decision to this file, one per line (to compare with the audit log after a crash)")
	f.StringVar(&gatewayFile, "gateway", "", "with --protocol ext-authz or forward: the server's gateway file (FHIR base, claims, purpose header, token issuer and audience)")
	f.StringVar(&gatewayKey, "gateway-key", "", "with --gateway: the private JWK (JSON) that signs the end users' tokens; its public key must be in the gateway file's key set")
	f.IntVar(&connections, "connections", 0, "with --protocol ext-authz: HTTP/2 connections the workers share, as the fewer worker threads of an Envoy do (0: one per worker)")
	f.IntVar(&serverPID, "server-pid", 0, "process id of the server under load (same machine, Linux): report its CPU time (user+system over the measured window) per answered request (serverCpuMicrosPerRequest)")
	f.StringVar(&writeGateway, "write-gateway", "", "write a new end-user key, its key set and a gateway file into this directory for serve --gateway and bench --gateway, and exit")
	return cmd
}
