package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-pdp/chaperone/callers"
)

// TracingConfig configures OpenTelemetry tracing, which is off unless an
// endpoint or exporter is given.
type TracingConfig struct {
	// Endpoint is the OTLP/HTTP collector URL, e.g. http://127.0.0.1:4318
	// (the exporter appends /v1/traces unless the URL has a path).
	Endpoint string
	// Exporter replaces the OTLP exporter (tests).
	Exporter sdktrace.SpanExporter
	// SampleRatio of new traces to keep (0 means 1: all); a caller's
	// sampled traceparent is always followed.
	SampleRatio float64
	// ServiceName is the service.name resource attribute; "" means
	// "chaperone".
	ServiceName string
}

// Tracing owns a tracer provider (never the global one) and makes the HTTP
// middleware that starts a server span per request, named by procedure,
// continuing the caller's W3C traceparent.
type Tracing struct {
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
}

// NewTracing returns tracing exporting to cfg's endpoint or exporter.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	exp := cfg.Exporter
	if exp == nil {
		if cfg.Endpoint == "" {
			return nil, errors.New("tracing: an OTLP endpoint is required")
		}
		var err error
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint))
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
	}
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	name := cfg.ServiceName
	if name == "" {
		name = "chaperone"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
	)
	return &Tracing{
		tp:   tp,
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// TracerProvider is the provider, for other packages' spans.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.tp }

// Middleware starts a span per request. Install it outside the [Guard]
// (first in [WithMiddleware]) so refusals are traced and the guard uses the
// trace id as correlation id when the caller sent no X-Request-Id.
func (t *Tracing) Middleware(next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, "chaperone",
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if _, ok := callers.ServiceOf(r.URL.Path); ok {
				return r.URL.Path[1:]
			}
			return r.Method + " " + r.URL.Path
		}),
	)
}

// Shutdown flushes pending spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

// ForceFlush exports the spans ended so far.
func (t *Tracing) ForceFlush(ctx context.Context) error { return t.tp.ForceFlush(ctx) }
