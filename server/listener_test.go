package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// TestBufferedListener: a server on a BufferedListener answers Connect
// JSON and protobuf over HTTP/1.1, gRPC over h2c and gRPC over TLS, with
// many calls in flight on each connection and requests larger than the
// read buffer, exactly as on the plain listener.
func TestBufferedListener(t *testing.T) {
	t.Parallel()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	serve := func(tlsCfg *tls.Config) string {
		hs := server.New(eng, v).HTTPServer()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln = server.BufferedListener(ln)
		t.Cleanup(func() { hs.Close() })
		if tlsCfg == nil {
			go hs.Serve(ln)
			return "http://" + ln.Addr().String()
		}
		server.EnableTLS(hs, tlsCfg)
		go hs.ServeTLS(ln, "", "")
		return "https://" + ln.Addr().String()
	}
	ca := newCA(t, "buffered")
	cert, _, _ := ca.issue(t, true, nil, []string{"localhost"})
	plain, secure := serve(nil), serve(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})

	h1 := &http.Client{Timeout: 10 * time.Second}
	small := checkRequest(t)
	// A request of about 12 KiB, three read buffers (refused: a profile
	// is at most 512 characters).
	large := checkRequest(t)
	large.Resource.Profiles = []string{"http://example.org/fhir/StructureDefinition/" + strings.Repeat("p", 12<<10)}
	for _, tc := range []struct {
		name   string
		client chaperonev1connect.DecisionServiceClient
	}{
		{"protocol=connect-json/http1", chaperonev1connect.NewDecisionServiceClient(h1, plain, connect.WithProtoJSON())},
		{"protocol=connect-proto/http1", chaperonev1connect.NewDecisionServiceClient(h1, plain)},
		{"protocol=grpc/h2c", chaperonev1connect.NewDecisionServiceClient(h2cClient(), plain, connect.WithGRPC())},
		{"protocol=grpc/tls", chaperonev1connect.NewDecisionServiceClient(tlsClient(ca, nil), secure, connect.WithGRPC())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The answer: a decision or an error code.
			ask := func(req *chaperonev1.CheckRequest) string {
				resp, err := tc.client.Check(context.Background(), connect.NewRequest(req))
				if err != nil {
					return connect.CodeOf(err).String()
				}
				return resp.Msg.GetDecision().String()
			}
			want := map[string]string{"small": "DECISION_ALLOW", "large": "invalid_argument"}
			for name, req := range map[string]*chaperonev1.CheckRequest{"small": small, "large": large} {
				if got := ask(req); got != want[name] {
					t.Fatalf("%s request: %s, want %s", name, got, want[name])
				}
			}
			var wg sync.WaitGroup
			errs := make(chan string, 16*25)
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 25 {
						name, req := "small", small
						if (w+i)%3 == 0 {
							name, req = "large", large
						}
						if got := ask(req); got != want[name] {
							errs <- name + ": " + got
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
