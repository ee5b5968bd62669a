package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/bench/load"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/validation"

	"github.com/chaperone-pdp/chaperone/server"
)

// benchServer serves the embedded reference bundle with an empty in-memory
// consent store on a loopback port.
func benchServer(t *testing.T) string {
	t.Helper()
	a, err := newApp(context.Background(), "", "", nil, consentstore.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	// The real server (HTTP/1.1 and h2c, so gRPC works too) on a loopback port.
	opts := append(a.serverOptions(), server.WithDoor(authzenDoor(slog.New(slog.DiscardHandler), 4<<20)))
	hs := server.New(a.engine, v, opts...).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// runBench runs "chaperone bench ARGS" through run, as main does.
func runBench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"bench"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBench(t *testing.T) {
	t.Parallel()
	addr := benchServer(t)
	reqFile := filepath.Join(t.TempDir(), "reqs.jsonl")
	if err := os.WriteFile(reqFile, []byte(`{"subject":{"kind":"practitioner","id":"Practitioner/p1","roles":["clinician"],"organization":"Organization/o1"},"action":"read","resource":{"type":"Observation","id":"o1","patient":"Patient/52","organization":"Organization/o1"},"purposeOfUse":"TREAT"}

{"subject":{"kind":"practitioner","id":"Practitioner/p1","roles":["clinician"],"organization":"Organization/o1"},"action":"read","resource":{"type":"Observation","id":"o1","patient":"Patient/52","organization":"Organization/o2"},"purposeOfUse":"TREAT"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(badFile, []byte(`{"subject":{"id":""},"action":"read","resource":{"type":"Observation"},"purposeOfUse":"TREAT"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		args     []string
		requests int64 // exact when > 0
		mixed    bool  // both ALLOW and DENY (the reference bundle evolves; exact counts are in bench/)
		errors   map[string]int64
	}{
		{
			// The reference scenario once through, consents seeded through ConsentService.Put.
			name: "scenario=reference/protocol=connect", requests: 16,
			args:  []string{"--scenario", "reference", "--max-requests", "16", "--concurrency", "2"},
			mixed: true,
		},
		{
			name: "scenario=reference/protocol=json", requests: 32,
			args:  []string{"--scenario", "reference", "--max-requests", "32", "--protocol", "json"},
			mixed: true,
		},
		{
			name: "scenario=reference/protocol=authzen", requests: 32,
			args:  []string{"--scenario", "reference", "--max-requests", "32", "--protocol", "authzen"},
			mixed: true,
		},
		{
			name: "scenario=reference/protocol=grpc", requests: 16,
			args:  []string{"--scenario", "reference", "--max-requests", "16", "--protocol", "grpc", "--concurrency", "4"},
			mixed: true,
		},
		{
			name: "requests=file", requests: 10,
			args:  []string{"--requests", reqFile, "--max-requests", "10", "--concurrency", "1"},
			mixed: true,
		},
		{
			name: "requests=invalid", requests: 4,
			args:   []string{"--requests", badFile, "--max-requests", "4"},
			errors: map[string]int64{"invalid_argument": 4},
		},
		{
			// Open loop: 400/s for 500ms is exactly 200 requests due.
			name: "mode=open", requests: 200,
			args: []string{"--scenario", "clinician-read", "--rate", "400", "--duration", "500ms", "--concurrency", "4"},
		},
		{
			name: "mode=closed/warmup",
			args: []string{"--scenario", "clinician-read", "--duration", "300ms", "--warmup", "100ms", "--concurrency", "2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--addr", addr, "--format", "json", "--duration", "10s"}, tc.args...)
			code, out, errOut := runBench(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var res load.Result
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, out)
			}
			// The documented fields, by name.
			var raw map[string]any
			_ = json.Unmarshal([]byte(out), &raw)
			for _, k := range []string{"requests", "errors", "throughput", "latency"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("output has no %q: %s", k, out)
				}
			}
			lat := raw["latency"].(map[string]any)
			for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
				if _, ok := lat[k]; !ok {
					t.Errorf("latency has no %q: %s", k, out)
				}
			}
			if tc.requests > 0 && res.Requests != tc.requests {
				t.Errorf("requests = %d, want %d", res.Requests, tc.requests)
			}
			if res.Requests == 0 || res.Throughput <= 0 {
				t.Errorf("nothing measured: %s", out)
			}
			if !(res.Latency.P50 > 0 && res.Latency.P50 <= res.Latency.P99 && res.Latency.P99 <= res.Latency.Max) {
				t.Errorf("latency percentiles out of order: %+v", res.Latency)
			}
			if tc.mixed && (res.Decisions["ALLOW"] == 0 || res.Decisions["DENY"] == 0 ||
				res.Decisions["ALLOW"]+res.Decisions["DENY"] != res.Requests) {
				t.Errorf("decisions = %v of %d requests, want ALLOW and DENY only", res.Decisions, res.Requests)
			}
			if tc.errors == nil && res.Errors != 0 {
				t.Errorf("errors: %v", res.ErrorCodes)
			}
			for k, want := range tc.errors {
				if res.ErrorCodes[k] != want || res.Errors != want {
					t.Errorf("errors = %d %v, want %v", res.Errors, res.ErrorCodes, tc.errors)
				}
			}
		})
	}
}

func TestBenchText(t *testing.T) {
	t.Parallel()
	addr := benchServer(t)
	code, out, errOut := runBench(t, "--addr", addr, "--scenario", "clinician-read", "--duration", "1200ms")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"throughput", "p99.9", "ALLOW"} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "sent,") {
		t.Errorf("no progress line on stderr: %q", errOut)
	}
}

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no requests", []string{"--duration", "1s"}},
		{"both", []string{"--scenario", "reference", "--requests", "x.jsonl"}},
		{"unknown scenario", []string{"--scenario", "nope"}},
		{"missing file", []string{"--requests", "/nonexistent.jsonl"}},
		{"bad format", []string{"--scenario", "reference", "--format", "xml"}},
		{"bad protocol", []string{"--scenario", "reference", "--protocol", "smtp", "--seed-consents=false"}},
		{"opa over connect", []string{"--scenario", "reference", "--target", "opa", "--protocol", "connect"}},
		{"negative rate", []string{"--scenario", "reference", "--rate", "-1", "--seed-consents=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if code, _, errOut := runBench(t, append([]string{"--addr", "127.0.0.1:1"}, tc.args...)...); code != exitUsage {
				t.Errorf("exit %d, want %d: %s", code, exitUsage, errOut)
			}
		})
	}
}

// TestBenchDecisionIDs: --decision-ids writes one id per answered decision,
// for Check and for --batch (every item of every batch).
func TestBenchDecisionIDs(t *testing.T) {
	t.Parallel()
	addr := benchServer(t)
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{name: "check", args: []string{"--max-requests", "20"}, want: 20},
		{name: "batch=50", args: []string{"--max-requests", "3", "--batch", "50"}, want: 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ids := filepath.Join(t.TempDir(), "ids")
			args := append([]string{"--addr", addr, "--scenario", "clinician-read", "--quiet", "--concurrency", "1", "--decision-ids", ids}, tc.args...)
			if code, out, errb := runBench(t, args...); code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errb)
			}
			b, err := os.ReadFile(ids)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Fields(string(b))
			seen := map[string]bool{}
			for _, l := range lines {
				seen[l] = true
			}
			if len(lines) != tc.want || len(seen) != tc.want {
				t.Fatalf("%d ids (%d distinct), want %d", len(lines), len(seen), tc.want)
			}
		})
	}
}

// gatewayBenchServer is benchServer with the gateway doors (forward-auth
// and ext_authz) of the gateway file `bench --write-gateway` writes; it
// returns the address and the bench flags that sign end-user tokens for
// it.
func gatewayBenchServer(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	if code, out, errb := runBench(t, "--write-gateway", dir); code != exitOK {
		t.Fatalf("--write-gateway: exit %d\n%s\n%s", code, out, errb)
	}
	gwFile, keyFile := filepath.Join(dir, load.GatewayFileName), filepath.Join(dir, load.GatewayKeyName)
	cfg, err := gateway.Load(gwFile)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close(context.Background()) })
	a, err := newApp(context.Background(), "", "", nil, consentstore.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	opts := append(a.serverOptions(),
		server.WithDoor(authzenDoor(logger, 4<<20)),
		server.WithDoor(forwardDoor(gw, logger)),
		server.WithGRPCDoor(extauthz.Service, extauthzDoor(gw, logger)))
	hs := server.New(a.engine, v, opts...).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), []string{"--gateway", gwFile, "--gateway-key", keyFile}
}

// TestBenchGatewayDoors: the gateway scenario through the four doors of
// one server (Connect JSON Check, AuthZEN, ext_authz and forward-auth)
// gets the same decisions, with and without distinct resource ids, and
// without errors: the tokens the generator signs are accepted and read
// back into the same subject.
func TestBenchGatewayDoors(t *testing.T) {
	t.Parallel()
	addr, gwArgs := gatewayBenchServer(t)
	for _, distinct := range []bool{false, true} {
		var first map[string]int64
		for _, protocol := range []string{"json", "authzen", "ext-authz", "ext-authz --connections 2", "forward"} {
			args := append([]string{"--addr", addr, "--format", "json", "--quiet", "--duration", "10s",
				"--scenario", "gateway", "--max-requests", "48", "--concurrency", "3", "--protocol"}, append(strings.Fields(protocol), gwArgs...)...)
			if distinct {
				args = append(args, "--distinct-ids")
			}
			code, out, errb := runBench(t, args...)
			if code != exitOK {
				t.Fatalf("%s: exit %d\n%s", protocol, code, errb)
			}
			var res load.Result
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%s: %v\n%s", protocol, err, out)
			}
			if res.Requests != 48 || res.Errors != 0 {
				t.Fatalf("%s (distinct ids %v): %d requests, errors %v, want 48 and none", protocol, distinct, res.Requests, res.ErrorCodes)
			}
			if res.Decisions["ALLOW"] == 0 || res.Decisions["DENY"] == 0 {
				t.Errorf("%s: decisions %v, want ALLOW and DENY", protocol, res.Decisions)
			}
			if first == nil {
				first = res.Decisions
				t.Logf("distinct ids %v: decisions %v", distinct, first)
			} else if !maps.Equal(first, res.Decisions) {
				t.Errorf("distinct ids %v: %s decided %v, json %v", distinct, protocol, res.Decisions, first)
			}
		}
	}
}

// TestBenchGatewayUsage: the gateway doors need a gateway and requests a
// door can carry.
func TestBenchGatewayUsage(t *testing.T) {
	t.Parallel()
	addr, gwArgs := gatewayBenchServer(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no gateway", []string{"--scenario", "gateway", "--protocol", "ext-authz"}, "no gateway"},
		{"key without gateway", []string{"--scenario", "gateway", "--protocol", "forward", "--gateway-key", gwArgs[3]}, "both"},
		{"labels and organizations", append([]string{"--scenario", "reference", "--protocol", "forward"}, gwArgs...), "carries more"},
		{"vread", append([]string{"--requests", writeRequests(t, `{"subject":{"id":"Practitioner/p1","kind":"practitioner"},"action":"vread","resource":{"type":"Observation","id":"o1"},"purposeOfUse":"TREAT","context":{"phase":"request"}}`), "--protocol", "ext-authz"}, gwArgs...), "action"},
		{"read with a patient", append([]string{"--requests", writeRequests(t, `{"subject":{"id":"Practitioner/p1","kind":"practitioner"},"action":"read","resource":{"type":"Observation","id":"o1","patient":"Patient/52"},"purposeOfUse":"TREAT","context":{"phase":"request"}}`), "--protocol", "ext-authz"}, gwArgs...), "patient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runBench(t, append([]string{"--addr", addr, "--duration", "1s", "--seed-consents=false"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want %d and %q: %s", code, exitUsage, tc.want, errOut)
			}
		})
	}
}

func writeRequests(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "reqs.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
