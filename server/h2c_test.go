package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// serveSplit serves srv on a loopback port as `chaperone serve` does
// (ServeH2C: HTTP/1.1 to net/http, cleartext HTTP/2 to the server's own
// HTTP/2 server) and returns its base URL.
func serveSplit(t testing.TB, srv *server.Server) string {
	t.Helper()
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeH2C(hs, ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // close everything now
		_ = srv.Shutdown(ctx, hs)
		_ = hs.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// countingRecorder counts the decisions recorded.
type countingRecorder struct{ n atomic.Int64 }

func (r *countingRecorder) Record(context.Context, string, *chaperonev1.CheckRequest, *chaperonev1.CheckResponse) error {
	r.n.Add(1)
	return nil
}

func referenceServer(t testing.TB, opts ...server.Option) *server.Server {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	return server.New(eng, v, opts...)
}

func grpcConn(t testing.TB, base string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestH2CClients: one port served by ServeH2C answers grpc-go (unary
// Check, health, the reflection stream), connect-go's gRPC client over
// h2c, Connect JSON over HTTP/1.1 and a plain HTTP/2 GET, with the same
// decision and one audit record per decision.
func TestH2CClients(t *testing.T) {
	t.Parallel()
	rec := &countingRecorder{}
	base := serveSplit(t, referenceServer(t, server.WithRecorder(rec)))
	req := checkRequest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc := grpcConn(t, base)

	var viaGRPC chaperonev1.CheckResponse
	if err := cc.Invoke(ctx, chaperonev1connect.DecisionServiceCheckProcedure, req, &viaGRPC); err != nil {
		t.Fatalf("grpc-go Check: %v", err)
	}
	if viaGRPC.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("grpc-go Check = %v", viaGRPC.GetDecision())
	}
	// Invalid input is invalid_argument, as over any transport.
	bad := &chaperonev1.CheckRequest{}
	if err := cc.Invoke(ctx, chaperonev1connect.DecisionServiceCheckProcedure, bad, &chaperonev1.CheckResponse{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty request: %v, want InvalidArgument", err)
	}

	hc, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hc, err)
	}

	stream, err := reflectpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // two requests on one bidirectional stream
		if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(resp.String(), chaperonev1connect.DecisionServiceName) {
			t.Fatalf("reflection lists %v", resp)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("reflection stream end: %v", err)
	}

	viaConnect, err := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, connect.WithGRPC()).Check(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("connect-go gRPC Check: %v", err)
	}
	viaJSON, err := chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second}, base, connect.WithProtoJSON()).Check(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("Connect JSON Check: %v", err)
	}
	for name, got := range map[string]*chaperonev1.CheckResponse{"connect-go gRPC": viaConnect.Msg, "Connect JSON": viaJSON.Msg} {
		if got.GetDecision() != viaGRPC.GetDecision() || len(got.GetReasons()) != len(viaGRPC.GetReasons()) {
			t.Errorf("%s: %v, grpc-go: %v", name, protojson.Format(got), protojson.Format(&viaGRPC))
		}
	}

	h2Get, err := h2cClient().Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(h2Get.Body)
	h2Get.Body.Close()
	if h2Get.StatusCode != http.StatusOK || h2Get.ProtoMajor != 2 || !strings.HasPrefix(string(body), "ok revision=") {
		t.Fatalf("h2c GET /healthz: %s %s %q", h2Get.Proto, h2Get.Status, body)
	}
	if n := rec.n.Load(); n != 3 {
		t.Errorf("%d audit records, want 3 (the invalid request is no decision)", n)
	}
}

// TestH2CConcurrentStreams: many concurrent calls on one HTTP/2
// connection, every one answered and recorded.
func TestH2CConcurrentStreams(t *testing.T) {
	t.Parallel()
	rec := &countingRecorder{}
	base := serveSplit(t, referenceServer(t, server.WithRecorder(rec)))
	cc := grpcConn(t, base)
	req := checkRequest(t)
	const workers, calls = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				var resp chaperonev1.CheckResponse
				err := cc.Invoke(ctx, chaperonev1connect.DecisionServiceCheckProcedure, req, &resp)
				cancel()
				if err == nil && resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
					err = status.Errorf(codes.Internal, "decision %v", resp.GetDecision())
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := rec.n.Load(); n != workers*calls {
		t.Errorf("%d audit records, want %d", n, workers*calls)
	}
}

// TestH2CLargeBodies: request and answer bodies many times the
// flow-control windows (the server's 1 MiB, the client's) arrive whole,
// one at a time and side by side on one connection.
func TestH2CLargeBodies(t *testing.T) {
	t.Parallel()
	srv := referenceServer(t, server.WithHTTPHandler("POST /echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, r.Body)
	})))
	base := serveSplit(t, srv)
	client := h2cClient()
	client.Timeout = 60 * time.Second
	payload := make([]byte, 6<<20)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(base+"/echo", "application/octet-stream", bytes.NewReader(payload[:len(payload)-i*1000]))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.ProtoMajor != 2 {
				t.Errorf("%s: %v", resp.Proto, err)
				return
			}
			if i == 0 && sha256.Sum256(got) != want || !bytes.Equal(got, payload[:len(payload)-i*1000]) {
				t.Errorf("echo %d: %d bytes back, not what was sent", i, len(got))
			}
		}()
	}
	wg.Wait()
}

// TestH2CCallerAuth: the caller checks apply to gRPC over the h2c server
// as to any request: no token, or one of another key, is
// unauthenticated; a valid one is answered.
func TestH2CCallerAuth(t *testing.T) {
	t.Parallel()
	key, otherKey := newSigner(t, "k1"), newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, key))
	g := startGuarded(t, server.GuardConfig{JWT: newVerifier(t, js.url, time.Hour)}, nil)
	cc := grpcConn(t, g.base)
	req := checkRequest(t)
	for _, tc := range []struct {
		name, token string
		want        codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"wrong key", otherKey.sign(t, claims{}), codes.Unauthenticated},
		{"malformed", "not.a-token", codes.Unauthenticated},
		{"valid", key.sign(t, claims{}), codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
			}
			err := cc.Invoke(ctx, chaperonev1connect.DecisionServiceCheckProcedure, req, &chaperonev1.CheckResponse{})
			if status.Code(err) != tc.want {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
		})
	}
}
