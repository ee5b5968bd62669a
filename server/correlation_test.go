package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/server"
)

func TestCorrelationID(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	g, err := server.NewGuard(server.GuardConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	h := g.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen = server.CorrelationID(r.Context())
	}))
	random := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name              string
		requestID, parent string
		want              string // "" means a new random id
	}{
		{name: "request id", requestID: "gw-7f3a:1", parent: tp, want: "gw-7f3a:1"},
		{name: "traceparent", parent: tp, want: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "neither"},
		{name: "request id with a newline", requestID: "a\nb"},
		{name: "request id too long", requestID: strings.Repeat("x", 129)},
		{name: "zero trace id", parent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
		{name: "malformed traceparent", parent: "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"},
		{name: "upper-case traceparent", parent: strings.ToUpper(tp)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/chaperone.v1.DecisionService/Check", nil)
			if tc.requestID != "" {
				req.Header.Set(server.HeaderRequestID, tc.requestID)
			}
			if tc.parent != "" {
				req.Header.Set(server.HeaderTraceparent, tc.parent)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			echoed := w.Header().Get(server.HeaderRequestID)
			if echoed != seen {
				t.Errorf("echoed %q, handler saw %q", echoed, seen)
			}
			switch {
			case tc.want != "" && seen != tc.want:
				t.Errorf("correlation id %q, want %q", seen, tc.want)
			case tc.want == "" && !random.MatchString(seen):
				t.Errorf("correlation id %q, want 32 random hex digits", seen)
			}
		})
	}
	if got := server.CorrelationID(context.Background()); got != "" {
		t.Errorf("outside a request: %q", got)
	}
	if got := server.CorrelationID(server.ContextWithCorrelationID(context.Background(), "c-9")); got != "c-9" {
		t.Errorf("ContextWithCorrelationID: %q", got)
	}
}
