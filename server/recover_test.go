package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// panickingConsents is a ConsentService whose Get panics.
type panickingConsents struct {
	chaperonev1connect.UnimplementedConsentServiceHandler
}

func (panickingConsents) Get(context.Context, *connect.Request[chaperonev1.ConsentServiceGetRequest]) (*connect.Response[chaperonev1.ConsentServiceGetResponse], error) {
	var ids []string
	_ = ids[len(ids)] // index out of range, as a bug would
	return nil, nil
}

func TestPanicIsAnsweredInternal(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	m := server.NewMetrics()
	srv := server.New(engine.New(noConsents{}), v,
		server.WithLogger(logger),
		server.WithMetrics(m),
		server.WithHTTPHandler("GET /metrics", m.Handler()),
		server.WithHTTPHandler("GET /boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })),
		server.WithService(chaperonev1connect.ConsentServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
			return chaperonev1connect.NewConsentServiceHandler(panickingConsents{}, opts...)
		}),
	)
	base := serveSplit(t, srv)

	for _, tc := range []struct {
		name   string
		client *http.Client
		opts   []connect.ClientOption
	}{
		{"connect", &http.Client{Timeout: 10 * time.Second}, nil},
		{"grpc", h2cClient(), []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", &http.Client{Timeout: 10 * time.Second}, []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := chaperonev1connect.NewConsentServiceClient(tc.client, base, tc.opts...)
			req := connect.NewRequest(&chaperonev1.ConsentServiceGetRequest{Id: "c1"})
			req.Header().Set(server.HeaderRequestID, "panic-"+tc.name)
			_, err := client.Get(context.Background(), req)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeInternal {
				t.Fatalf("want internal, got %v", err)
			}
			if strings.Contains(ce.Message(), "index out of range") {
				t.Errorf("the panic reached the caller: %q", ce.Message())
			}
		})
	}

	resp, err := http.Get(base + "/boom")
	if err != nil {
		t.Fatalf("plain handler: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "boom") {
		t.Errorf("plain handler: %s %q, want 500 without the panic value", resp.Status, body)
	}

	if n, _ := value(scrape(t, base), "chaperone_handler_panics_total", nil); n != 4 {
		t.Errorf("chaperone_handler_panics_total = %v, want 4", n)
	}
	for _, id := range []string{"panic-connect", "panic-grpc", "panic-grpc-web"} {
		if !strings.Contains(logs.String(), `"correlation_id":"`+id+`"`) {
			t.Errorf("no panic logged with correlation id %s", id)
		}
	}
}
