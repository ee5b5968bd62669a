package load

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// threadCPU is the CPU time of the calling thread (RUSAGE_THREAD).
func threadCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestServerCPU runs the generator against a loopback server in this very
// process, whose handler burns a known CPU time per request, and reads
// this process's pid as the server's: the report's CPU per answered
// request must cover what the handler burnt.
func TestServerCPU(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	const burn = 3 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU(t)
		for i := 0; threadCPU(t)-start < burn && i < 1e7; i++ {
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"decision":"DECISION_ALLOW"}`)
	}))
	defer srv.Close()

	const n = 40
	res, err := Run(t.Context(), Config{
		Addr: srv.URL, Protocol: ProtocolJSON, Duration: time.Minute, MaxRequests: n,
		Requests:  []*chaperonev1.CheckRequest{{Action: "read"}},
		ServerPID: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != n || res.Errors != 0 || res.Decisions["ALLOW"] != n {
		t.Fatalf("requests %d, errors %v, decisions %v", res.Requests, res.ErrorCodes, res.Decisions)
	}
	// One clock tick (10 ms) of slack over the whole window.
	low := (float64(n*burn.Microseconds()) - 10_000) / n
	if res.ServerCPUMicrosPerRequest < low || res.ServerCPUMicrosPerRequest > 50*float64(burn.Microseconds()) {
		t.Errorf("server cpu %.1f µs per request (%.3f s); the handler alone burnt %v each", res.ServerCPUMicrosPerRequest, res.ServerCPUSeconds, burn)
	}
	if got := res.ServerCPUSeconds * 1e6 / float64(n); math.Abs(got-res.ServerCPUMicrosPerRequest) > 0.5 {
		t.Errorf("serverCpuSeconds/requests = %.1f µs, serverCpuMicrosPerRequest = %.1f", got, res.ServerCPUMicrosPerRequest)
	}

	// A process that does not exist stops the run before it starts.
	if _, err := Run(t.Context(), Config{
		Addr: srv.URL, Protocol: ProtocolJSON, Duration: time.Second, MaxRequests: 1,
		Requests: []*chaperonev1.CheckRequest{{Action: "read"}}, ServerPID: 1 << 30,
	}); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}

func TestStatTicks(t *testing.T) {
	t.Parallel()
	rest := "S 1 2 3 4 5 6 7 8 9 10 %d %d 11 12 13"
	for _, tc := range []struct {
		name, stat string
		want       int64
		bad        bool
	}{
		{name: "plain", stat: "42 (chaperone) " + fmt.Sprintf(rest, 150, 25), want: 175},
		{name: "name with spaces and parentheses", stat: "42 (a) b (c) " + fmt.Sprintf(rest, 7, 3), want: 10},
		{name: "no name", stat: "42 chaperone S 1", bad: true},
		{name: "too short", stat: "42 (x) S 1 2 3", bad: true},
		{name: "not a number", stat: "42 (x) S 1 2 3 4 5 6 7 8 9 10 x 1 11", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := statTicks([]byte(tc.stat))
			if tc.bad != (err != nil) || got != tc.want {
				t.Errorf("statTicks = %d, %v; want %d (error %v)", got, err, tc.want, tc.bad)
			}
		})
	}
}
