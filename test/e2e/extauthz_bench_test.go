package e2e_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// cpuTime is the user+system CPU time of process pid (/proc/PID/stat,
// clock ticks of 10 ms).
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	// Fields after the command name in parentheses: state is field 3,
	// utime 14 and stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// BenchmarkServedCPU is the CPU of a `chaperone serve --gateway` process per
// decision (server-µs/decision; the client runs in the benchmark's own
// process), for the same allowed request asked through the ext_authz door
// (grpc-go over h2c, as Envoy asks) and as a Check of the CheckRequest the
// door maps it to, in Connect JSON over HTTP/1.1 and in gRPC over h2c. Run it with -benchtime 20000x or more:
// the kernel counts CPU in 10 ms ticks.
func BenchmarkServedCPU(b *testing.B) {
	cmd, base, token := serveGateway(b, "--audit-file", filepath.Join(b.TempDir(), "audit.jsonl"))
	pid := cmd.Process.Pid

	cc, err := grpc.NewClient(strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	envoy := authv3.NewAuthorizationClient(cc)
	envoyReq := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/fhir/Observation?patient=Patient/51",
			Headers: map[string]string{"authorization": token, "x-purpose-of-use": "TREAT"},
		}},
	}}
	check := chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}, base, connect.WithProtoJSON())
	checkReq := &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "search",
		Resource:     &chaperonev1.Resource{Type: "Observation", Patient: "Patient/51"},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{Phase: "request"},
	}
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	checkGRPC := chaperonev1connect.NewDecisionServiceClient(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &h2}}, base, connect.WithGRPC())
	doors := []struct {
		name string
		ask  func(ctx context.Context) (bool, error)
	}{
		{"door=ext-authz", func(ctx context.Context) (bool, error) {
			resp, err := envoy.Check(ctx, envoyReq)
			return resp.GetStatus().GetCode() == 0, err
		}},
		{"door=check-json", func(ctx context.Context) (bool, error) {
			resp, err := check.Check(ctx, connect.NewRequest(checkReq))
			if err != nil {
				return false, err
			}
			return resp.Msg.GetDecision() == chaperonev1.Decision_DECISION_ALLOW, nil
		}},
		{"door=check-grpc", func(ctx context.Context) (bool, error) {
			resp, err := checkGRPC.Check(ctx, connect.NewRequest(checkReq))
			if err != nil {
				return false, err
			}
			return resp.Msg.GetDecision() == chaperonev1.Decision_DECISION_ALLOW, nil
		}},
	}
	for _, d := range doors {
		b.Run(d.name, func(b *testing.B) {
			ctx := context.Background()
			if ok, err := d.ask(ctx); err != nil || !ok {
				b.Fatalf("first answer %v, %v: want an allow", ok, err)
			}
			before := cpuTime(b, pid)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if ok, err := d.ask(ctx); err != nil || !ok {
						b.Errorf("answer %v, %v: want an allow", ok, err)
						return
					}
				}
			})
			b.StopTimer()
			used := cpuTime(b, pid) - before
			b.ReportMetric(float64(used.Microseconds())/float64(b.N), "server-µs/decision")
		})
	}
}
