package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/chaperone-pdp/chaperone/server"
)

func TestTracingSpansAndCorrelation(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr, err := server.NewTracing(context.Background(), server.TracingConfig{Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	g, err := server.NewGuard(server.GuardConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := tr.Middleware(g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := httptest.NewRequest(http.MethodPost, "/chaperone.v1.DecisionService/Check", nil)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if got := w.Header().Get(server.HeaderRequestID); got != traceID {
		t.Errorf("correlation id %q, want the caller's trace id", got)
	}

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/chaperone.v1.DecisionService/Check", nil))
	newID := w.Header().Get(server.HeaderRequestID)

	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	if spans[0].Name != "chaperone.v1.DecisionService/Check" {
		t.Errorf("span name %q", spans[0].Name)
	}
	if got := spans[0].SpanContext.TraceID().String(); got != traceID {
		t.Errorf("span trace id %s does not continue the caller's trace", got)
	}
	if got := spans[1].SpanContext.TraceID().String(); got != newID {
		t.Errorf("new trace %s, but correlation id %s", got, newID)
	}
	var sawCorrelation bool
	for _, a := range spans[0].Attributes {
		if a.Key == "chaperone.correlation_id" && a.Value.AsString() == traceID {
			sawCorrelation = true
		}
	}
	if !sawCorrelation {
		t.Errorf("span lacks chaperone.correlation_id: %v", spans[0].Attributes)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if _, err := server.NewTracing(context.Background(), server.TracingConfig{}); err == nil {
		t.Error("no endpoint and no exporter: want an error")
	}
}
