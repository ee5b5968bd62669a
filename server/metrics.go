package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/chaperone-pdp/chaperone/callers"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Metrics is Chaperone's Prometheus registry (its own, not the global
// one) with the server's metrics:
//
//	chaperone_rpc_requests_total{procedure,code}      requests by Connect code (ok, unauthenticated, …)
//	chaperone_rpc_duration_seconds{procedure}         latency histogram per method
//	chaperone_decisions_total{decision}               decisions by result (allow, deny)
//	chaperone_decision_reasons_total{decision,reason} reason codes of decisions
//	chaperone_caller_refusals_total{code}             requests refused by the guard
//	chaperone_handler_panics_total                    requests whose handler panicked (answered internal)
//
// and hooks other packages plug their own statistics into without
// importing Prometheus: [Metrics.ConsentCache], [Metrics.RedisErrors],
// [Metrics.Bundle], [Metrics.AuditQueue], or any [Metrics.GaugeFunc] /
// [Metrics.CounterFunc]. Serve it with [Metrics.Handler] (e.g.
// [WithHTTPHandler]("GET /metrics", m.Handler())).
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	reasons   *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	panics    prometheus.Counter

	known sync.Map // path → procedure label, for procedures in the registry
}

// Label of requests to paths that are not a known procedure.
const unknownProcedure = "unknown"

// NewMetrics returns a registry with the server metrics and the Go runtime
// and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_rpc_requests_total",
			Help: "RPC requests by procedure and Connect code.",
		}, []string{"procedure", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chaperone_rpc_duration_seconds",
			Help:    "RPC latency by procedure, from the first byte of the request to the end of the handler.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12), // 50µs … 1.2s
		}, []string{"procedure"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_decisions_total",
			Help: "Decisions by result.",
		}, []string{"decision"}),
		reasons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_decision_reasons_total",
			Help: "Reason codes of decisions (a decision with several reasons counts once per reason).",
		}, []string{"decision", "reason"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_caller_refusals_total",
			Help: "Requests refused before reaching a service: unauthenticated, permission_denied, resource_exhausted.",
		}, []string{"code"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chaperone_handler_panics_total",
			Help: "Requests whose handler panicked; each was answered with code internal.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.decisions, m.reasons, m.refusals, m.panics,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registerer is where other collectors may be registered.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Gatherer gathers every registered metric (tests, other exporters).
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// GaugeFunc registers a gauge read from fn at every scrape.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) error {
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// CounterFunc registers a counter read from fn (monotonic) at every scrape.
func (m *Metrics) CounterFunc(name, help string, fn func() float64) error {
	return m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// ConsentCache publishes the consent cache's hit and miss counts
// (chaperone_consent_cache_hits_total, …_misses_total) and their ratio
// since start (chaperone_consent_cache_hit_ratio).
func (m *Metrics) ConsentCache(hits, misses func() uint64) error {
	return errors.Join(
		m.CounterFunc("chaperone_consent_cache_hits_total", "Consent cache hits.", func() float64 { return float64(hits()) }),
		m.CounterFunc("chaperone_consent_cache_misses_total", "Consent cache misses.", func() float64 { return float64(misses()) }),
		m.GaugeFunc("chaperone_consent_cache_hit_ratio", "Consent cache hits / lookups since start.", func() float64 {
			h, mi := float64(hits()), float64(misses())
			if h+mi == 0 {
				return 0
			}
			return h / (h + mi)
		}),
	)
}

// RedisErrors publishes the count of failed Redis operations
// (chaperone_redis_errors_total).
func (m *Metrics) RedisErrors(errs func() uint64) error {
	return m.CounterFunc("chaperone_redis_errors_total", "Failed Redis operations.", func() float64 { return float64(errs()) })
}

// Bundle publishes the active bundle revision as
// chaperone_bundle_info{revision="…"} 1 (nothing while no bundle is
// active, i.e. revision returns "") and the count of failed bundle loads
// (chaperone_bundle_load_failures_total).
func (m *Metrics) Bundle(revision func() string, loadFailures func() uint64) error {
	return errors.Join(
		m.reg.Register(&bundleInfo{revision: revision, desc: prometheus.NewDesc(
			"chaperone_bundle_info", "The active policy bundle (value 1, revision as a label).", []string{"revision"}, nil)}),
		m.CounterFunc("chaperone_bundle_load_failures_total", "Policy bundle loads or activations that failed.", func() float64 { return float64(loadFailures()) }),
	)
}

// AuditQueue publishes the audit queue depth (chaperone_audit_queue_depth)
// and the count of records dropped (chaperone_audit_dropped_total).
func (m *Metrics) AuditQueue(depth func() int, drops func() uint64) error {
	return errors.Join(
		m.GaugeFunc("chaperone_audit_queue_depth", "Audit records waiting to be written.", func() float64 { return float64(depth()) }),
		m.CounterFunc("chaperone_audit_dropped_total", "Audit records dropped.", func() float64 { return float64(drops()) }),
	)
}

type bundleInfo struct {
	revision func() string
	desc     *prometheus.Desc
}

func (b *bundleInfo) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *bundleInfo) Collect(ch chan<- prometheus.Metric) {
	if r := b.revision(); r != "" {
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, 1, r)
	}
}

// procedureLabel is path when it names a method in the protobuf registry
// (so labels stay bounded whatever paths callers send), else "unknown".
func (m *Metrics) procedureLabel(path string) string {
	if v, ok := m.known.Load(path); ok {
		return v.(string)
	}
	svc, ok := callers.ServiceOf(path)
	if !ok {
		return unknownProcedure
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return unknownProcedure
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok || sd.Methods().ByName(protoreflect.Name(path[len(svc)+2:])) == nil {
		return unknownProcedure
	}
	m.known.Store(path, path)
	return path
}

// observe records one finished request.
func (m *Metrics) observe(procedure string, code string, d time.Duration) {
	m.requests.WithLabelValues(procedure, code).Inc()
	m.latency.WithLabelValues(procedure).Observe(d.Seconds())
}

func (m *Metrics) panicked() { m.panics.Inc() }

func (m *Metrics) refused(code connect.Code) {
	m.refusals.WithLabelValues(code.String()).Inc()
}

// countDecision counts one decision and its reason codes.
func (m *Metrics) countDecision(resp *chaperonev1.CheckResponse) {
	var d string
	switch resp.GetDecision() {
	case chaperonev1.Decision_DECISION_ALLOW:
		d = "allow"
	case chaperonev1.Decision_DECISION_DENY:
		d = "deny"
	default:
		d = "unspecified"
	}
	m.decisions.WithLabelValues(d).Inc()
	for _, r := range resp.GetReasons() {
		m.reasons.WithLabelValues(d, r.GetCode()).Inc()
	}
}

// codeLabel is the label of a Connect code, "ok" for success.
func codeLabel(c connect.Code, set bool) string {
	if !set || c == 0 {
		return "ok"
	}
	return c.String()
}

// httpStatusCode guesses the Connect code of a request that never reached
// an interceptor (a body that did not decode, a message too large) from
// its HTTP status and gRPC status header.
func httpStatusCode(status int, h http.Header) (connect.Code, bool) {
	if s := h.Get("Grpc-Status"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return connect.Code(n), n != 0
		}
	}
	switch status {
	case 0, http.StatusOK:
		return 0, false
	case http.StatusBadRequest:
		return connect.CodeInvalidArgument, true
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated, true
	case http.StatusForbidden:
		return connect.CodePermissionDenied, true
	case http.StatusNotFound:
		return connect.CodeNotFound, true
	case http.StatusRequestEntityTooLarge:
		return connect.CodeResourceExhausted, true
	case http.StatusTooManyRequests:
		return connect.CodeResourceExhausted, true
	case http.StatusUnsupportedMediaType:
		return connect.CodeUnimplemented, true
	default:
		return connect.CodeUnknown, true
	}
}

// metricsInterceptor records the Connect code of every handled request in
// its requestInfo and counts the decisions of Check and BatchCheck.
type metricsInterceptor struct{ m *Metrics }

var _ connect.Interceptor = metricsInterceptor{}

func (mi metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		setCode(ctx, err)
		if err == nil && mi.m != nil {
			switch msg := resp.Any().(type) {
			case *chaperonev1.CheckResponse:
				mi.m.countDecision(msg)
			case *chaperonev1.BatchCheckResponse:
				for _, r := range msg.GetResponses() {
					mi.m.countDecision(r)
				}
			}
		}
		return resp, err
	}
}

func (metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		setCode(ctx, err)
		return err
	}
}

func setCode(ctx context.Context, err error) {
	if ri := requestInfoFrom(ctx); ri != nil {
		ri.code, ri.codeSet = 0, true
		if err != nil {
			ri.code = connect.CodeOf(err)
		}
	}
}
