// Package load is the load generator behind `chaperone bench`: it sends
// CheckRequests to a decision point (Chaperone over Connect, gRPC, Connect
// JSON or AuthZEN, through its gateway doors as Envoy's ext_authz and
// nginx's auth_request ask them, with end-user tokens a [Gateway] signs,
// or OPA's REST data API) from a fixed number of workers,
// records every latency in an HDR histogram and reports throughput,
// percentiles, errors by code and decision counts as a [Result].
//
// Two modes:
//
//   - closed loop (Config.Rate == 0): each worker sends its next request as
//     soon as the previous answer arrived; latency is send → answer.
//   - open loop (Config.Rate > 0): request n is due at [Schedule.At](n),
//     whatever happened before; latency is measured from that intended send
//     time, so a stalled server shows up in the tail instead of silently
//     slowing the generator down (no coordinated omission). Workers only
//     carry the requests; when all are busy, due requests wait and their wait
//     counts as latency.
//
// Every run is bounded by Config.Duration and Config.MaxRequests.
//
//	res, err := load.Run(ctx, load.Config{
//		Addr: "127.0.0.1:8787", Protocol: load.ProtocolConnect,
//		Requests: sc.Requests, Duration: 30 * time.Second, Concurrency: 8,
//	})
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Protocol is how requests reach the target.
type Protocol string

// Protocols.
const (
	// ProtocolConnect is the Connect protocol with protobuf bodies over HTTP/1.1.
	ProtocolConnect Protocol = "connect"
	// ProtocolGRPC is gRPC over cleartext HTTP/2.
	ProtocolGRPC Protocol = "grpc"
	// ProtocolJSON is JSON over HTTP/1.1: Connect JSON for Chaperone, the
	// REST data API ({"input": …}) for OPA.
	ProtocolJSON Protocol = "json"
	// ProtocolAuthZEN is the OpenID AuthZEN 1.0 access evaluation
	// (POST /access/v1/evaluation, JSON over HTTP/1.1), Chaperone only.
	ProtocolAuthZEN Protocol = "authzen"
	// ProtocolExtAuthz is Envoy's ext_authz v3 Check over gRPC (h2c, or
	// TLS for an https:// address), asked as Envoy asks about the FHIR
	// REST request each CheckRequest is the request-phase decision of,
	// with an end-user token signed by Config.Gateway. Chaperone only.
	ProtocolExtAuthz Protocol = "ext-authz"
	// ProtocolForward is the forward-auth door (GET /authz/forward with
	// X-Original-Method, X-Original-URI and Authorization over HTTP/1.1),
	// asked as nginx's auth_request does, like ProtocolExtAuthz.
	ProtocolForward Protocol = "forward"
)

// Target is the kind of server under load.
type Target string

// Targets.
const (
	TargetChaperone Target = "chaperone"
	TargetOPA       Target = "opa"
)

// preciseTimersBelow is the open-loop rate (per second) under which workers
// wait on kernel timers (timerfd on Linux) rather than Go timers. Under it
// the generator is mostly idle and a Go timer sleeps in epoll_wait, whose
// millisecond resolution made sends up to 1 ms late (at 2,000/s: send lag
// p50 0.46 ms, p99 1.28 ms, against 0.09 and 0.40 with timerfd). Above it
// the runtime is busy, checks its timers at every scheduling point and
// fires them on time (at 10,000/s: lag p50 0.08 ms), and the two system
// calls per wait of a kernel timer would take CPU from the server.
const preciseTimersBelow = 5000

// DefaultMaxRequests bounds a run that sets no Config.MaxRequests.
const DefaultMaxRequests = 100_000_000

// Config describes one run.
type Config struct {
	// Addr is host:port or a base URL (http://host:port).
	Addr     string
	Target   Target   // default TargetChaperone
	Protocol Protocol // default ProtocolConnect; OPA only speaks ProtocolJSON
	// OPAPath is the data API path of the decision for TargetOPA, e.g.
	// /v1/data/chaperone/bench/decision. The rule must be an object with a
	// "decision" field ("ALLOW" or "DENY").
	OPAPath string
	// Requests are sent in turn, request n being Requests[n % len].
	Requests    []*chaperonev1.CheckRequest
	Duration    time.Duration // measured time, after Warmup
	Warmup      time.Duration // sent but not recorded
	Concurrency int           // workers (connections), default 1
	// Rate is the open-loop rate in requests per second; 0 is closed loop.
	Rate float64
	// DistinctIDs gives every request a resource id of its own (the
	// request's id with "-<worker>.<n>" appended; requests without an id
	// keep none), so memos keyed on the whole request miss as they do in
	// real traffic. Bodies are then encoded per request.
	DistinctIDs bool
	// MaxRequests bounds the number of requests sent (default DefaultMaxRequests).
	MaxRequests int64
	// Timeout bounds one request (default 10s); a timeout is an error
	// with code deadline_exceeded.
	Timeout time.Duration
	// Batch, above 1, sends BatchCheck of this many requests (the next
	// ones in turn, each with a distinct resource id) instead of Check;
	// a request of the report is then one batch.
	Batch int
	// DecisionIDs, when set, receives the decision id of every answered
	// decision (warmup included, AUDIT_UNAVAILABLE denials left out), one
	// per line: to compare with the audit log after a crash.
	DecisionIDs io.Writer
	// Connections, above 0, is the number of HTTP/2 connections the
	// workers of ProtocolExtAuthz share (in turn); 0 is one per worker.
	Connections int
	// Gateway signs the end-user tokens of ProtocolExtAuthz and
	// ProtocolForward and says how the server's gateway doors read them.
	Gateway *Gateway
	// ServerPID, when set, is the process id of the server under load (on
	// this machine): its CPU time (user + system, /proc/PID/stat) over the
	// measured window, divided by the requests answered in it, is the
	// report's ServerCPUMicrosPerRequest.
	ServerPID int
	// Progress, when set, receives one line per ProgressEvery (default 1s).
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Result is what a run measured. Latencies are in milliseconds.
type Result struct {
	Target      Target           `json:"target"`
	Protocol    Protocol         `json:"protocol"`
	Mode        string           `json:"mode"` // "closed" or "open"
	Concurrency int              `json:"concurrency"`
	Rate        float64          `json:"rate,omitempty"`  // the open-loop target rate
	Duration    float64          `json:"durationSeconds"` // measurement start to last answer
	Requests    int64            `json:"requests"`        // recorded requests, errors included
	Errors      int64            `json:"errors"`
	ErrorCodes  map[string]int64 `json:"errorsByCode"`
	Decisions   map[string]int64 `json:"decisions"`
	Throughput  float64          `json:"throughput"` // recorded requests per second
	// Latency is from the intended send time in open loop (coordinated
	// omission corrected), from the send in closed loop.
	Latency Latency `json:"latency"`
	// Service is from the actual send to the answer; SendLag is how late
	// the generator sent after the intended time (open loop only). Go
	// timers under 1 ms on an idle CPU round up to 1 ms (epoll), so a lag
	// up to about 1 ms is the generator's, not the target's; a larger lag
	// means all workers were busy waiting for answers.
	Service *Latency `json:"service,omitempty"`
	SendLag *Latency `json:"sendLag,omitempty"`
	// ServerCPUSeconds is the CPU time (user + system) the process of
	// Config.ServerPID used from the end of the warmup to the last answer,
	// and ServerCPUMicrosPerRequest that time divided by the requests
	// answered (errors left out) in the window, in microseconds.
	ServerCPUSeconds          float64 `json:"serverCpuSeconds,omitempty"`
	ServerCPUMicrosPerRequest float64 `json:"serverCpuMicrosPerRequest,omitempty"`
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Schedule is the open-loop send schedule: request n is due at
// Start + n/Rate seconds.
type Schedule struct {
	Start time.Time
	Rate  float64 // requests per second, > 0
}

// At returns when request n is due.
func (s Schedule) At(n int64) time.Time {
	return s.Start.Add(time.Duration(float64(n) * float64(time.Second) / s.Rate))
}

// Count returns how many requests are due in [Start, Start+d).
func (s Schedule) Count(d time.Duration) int64 {
	n := int64(d.Seconds() * s.Rate)
	// At rounds down, so request n may already be due before the end.
	for s.At(n).Before(s.Start.Add(d)) {
		n++
	}
	for n > 0 && !s.At(n-1).Before(s.Start.Add(d)) {
		n--
	}
	return n
}

// Histogram range: 1 µs resolution up to 60 s, 3 significant digits.
const (
	histLowest  = int64(time.Microsecond)
	histHighest = int64(60 * time.Second)
	histDigits  = 3
)

// outcome of one request.
type outcome struct {
	decision string // ALLOW, DENY, … when answered
	code     string // error code when failed
}

// sender sends request i (an index into Config.Requests) and reports the
// outcome. One sender per worker; senders reuse their buffers.
type sender interface {
	send(ctx context.Context, i int) outcome
}

// worker state, merged at the end.
type workerStats struct {
	hist      *hdrhistogram.Histogram
	service   *hdrhistogram.Histogram
	lag       *hdrhistogram.Histogram
	decisions map[string]int64
	codes     map[string]int64
	errors    int64
}

// Run runs one load test and returns what it measured. It returns an error
// only when the run could not start (bad configuration); request failures
// are counted in the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var cpuStart time.Duration
	cpuAt := make(chan error, 1)
	if cfg.ServerPID != 0 {
		if _, err := ProcessCPU(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("server pid: %w", err)
		}
	}
	newSender, closeTarget, err := newTarget(&cfg)
	if err != nil {
		return nil, err
	}
	defer closeTarget()

	senders := make([]sender, cfg.Concurrency)
	for i := range senders {
		senders[i] = newSender()
	}

	var (
		next, sent, failed atomic.Int64
		wg                 sync.WaitGroup
		stats              = make([]*workerStats, cfg.Concurrency)
	)
	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	deadline := warmEnd.Add(cfg.Duration)
	sched := Schedule{Start: start, Rate: cfg.Rate}
	open := cfg.Rate > 0
	rctx, cancel := context.WithDeadline(ctx, deadline.Add(cfg.Timeout))
	defer cancel()

	for w := range cfg.Concurrency {
		st := &workerStats{
			hist:      hdrhistogram.New(histLowest, histHighest, histDigits),
			service:   hdrhistogram.New(histLowest, histHighest, histDigits),
			lag:       hdrhistogram.New(histLowest, histHighest, histDigits),
			decisions: map[string]int64{},
			codes:     map[string]int64{},
		}
		stats[w] = st
		s := senders[w]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w waiter
			if open {
				w = newWaiter(cfg.Rate < preciseTimersBelow)
				defer w.close()
			}
			for rctx.Err() == nil {
				n := next.Add(1) - 1
				if n >= cfg.MaxRequests {
					return
				}
				var due time.Time
				if open {
					due = sched.At(n)
					if !due.Before(deadline) {
						return
					}
					if d := time.Until(due); d > 0 {
						if w.wait(rctx, d) != nil {
							return
						}
					}
				} else {
					due = time.Now()
					if !due.Before(deadline) {
						return
					}
				}
				sentAt := time.Now()
				o := s.send(rctx, int(n%int64(len(cfg.Requests))))
				lat := time.Since(due)
				svc := time.Since(sentAt)
				sent.Add(1)
				if o.code != "" {
					failed.Add(1)
				}
				if due.Before(warmEnd) {
					continue
				}
				if o.code != "" {
					st.errors++
					st.codes[o.code]++
				} else {
					st.decisions[o.decision]++
				}
				_ = st.hist.RecordValue(clampHist(lat))
				_ = st.service.RecordValue(clampHist(svc))
				_ = st.lag.RecordValue(clampHist(sentAt.Sub(due)))
			}
		}()
	}

	stopProgress := progress(&cfg, start, &sent, &failed)
	if cfg.ServerPID != 0 {
		// The server's CPU clock starts when the warmup ends.
		go func() {
			t := time.NewTimer(time.Until(warmEnd))
			defer t.Stop()
			select {
			case <-t.C:
			case <-rctx.Done():
			}
			var err error
			cpuStart, err = ProcessCPU(cfg.ServerPID)
			cpuAt <- err
		}()
	}
	wg.Wait()
	stopProgress()
	end := time.Now()
	var cpu time.Duration
	var cpuErr error
	if cfg.ServerPID != 0 {
		cpuErr = <-cpuAt
		if cpuErr == nil {
			var cpuEnd time.Duration
			cpuEnd, cpuErr = ProcessCPU(cfg.ServerPID)
			cpu = cpuEnd - cpuStart
		}
	}

	res := &Result{
		Target: cfg.Target, Protocol: cfg.Protocol, Mode: "closed", Concurrency: cfg.Concurrency,
		ErrorCodes: map[string]int64{}, Decisions: map[string]int64{},
	}
	if open {
		res.Mode, res.Rate = "open", cfg.Rate
	}
	hist := hdrhistogram.New(histLowest, histHighest, histDigits)
	service := hdrhistogram.New(histLowest, histHighest, histDigits)
	lag := hdrhistogram.New(histLowest, histHighest, histDigits)
	for _, st := range stats {
		hist.Merge(st.hist)
		service.Merge(st.service)
		lag.Merge(st.lag)
		res.Errors += st.errors
		for k, v := range st.codes {
			res.ErrorCodes[k] += v
		}
		for k, v := range st.decisions {
			res.Decisions[k] += v
		}
	}
	res.Requests = hist.TotalCount()
	// From the start of measurement to the last answer: when the target
	// could not keep up with an open-loop rate, the backlog drains after
	// the deadline and the throughput is what was achieved, not the rate.
	measured := end.Sub(warmEnd)
	if measured <= 0 {
		measured = end.Sub(start)
	}
	res.Duration = measured.Seconds()
	res.Throughput = float64(res.Requests) / measured.Seconds()
	res.Latency = latencyOf(hist)
	if open {
		s, l := latencyOf(service), latencyOf(lag)
		res.Service, res.SendLag = &s, &l
	}
	if cfg.ServerPID != 0 {
		if cpuErr != nil {
			return res, fmt.Errorf("server cpu: %w", cpuErr)
		}
		res.ServerCPUSeconds = cpu.Seconds()
		if answered := res.Requests - res.Errors; answered > 0 {
			res.ServerCPUMicrosPerRequest = float64(cpu.Microseconds()) / float64(answered)
		}
	}
	return res, ctx.Err()
}

func clampHist(d time.Duration) int64 { return min(max(int64(d), histLowest), histHighest) }

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(v int64) float64 { return float64(v) / float64(time.Millisecond) }
	return Latency{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / float64(time.Millisecond),
	}
}

func (cfg *Config) defaults() error {
	if cfg.Target == "" {
		cfg.Target = TargetChaperone
	}
	if cfg.Protocol == "" {
		cfg.Protocol = ProtocolConnect
		if cfg.Target == TargetOPA {
			cfg.Protocol = ProtocolJSON
		}
	}
	switch {
	case len(cfg.Requests) == 0:
		return errors.New("no requests to send")
	case cfg.Duration <= 0:
		return errors.New("duration must be positive")
	case cfg.Warmup < 0:
		return errors.New("warmup must not be negative")
	case cfg.Rate < 0:
		return errors.New("rate must not be negative")
	case cfg.Addr == "":
		return errors.New("no address")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = DefaultMaxRequests
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	return nil
}

// progress prints one line per interval until the returned func is called.
func progress(cfg *Config, start time.Time, sent, failed *atomic.Int64) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		last, lastAt := int64(0), start
		line := func(now time.Time, phase string) {
			n := sent.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			if phase == "" && now.Sub(start) < cfg.Warmup {
				phase = " (warmup)"
			}
			fmt.Fprintf(cfg.Progress, "[%5.1fs] %d sent, %.0f/s, %d errors%s\n",
				now.Sub(start).Seconds(), n, rate, failed.Load(), phase)
			last, lastAt = n, now
		}
		for {
			select {
			case <-done:
				// The last line carries the totals, so even a run shorter
				// than one interval (or one whose ticks were starved on a
				// busy machine) reports what it sent.
				line(time.Now(), " (done)")
				return
			case now := <-t.C:
				line(now, "")
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
