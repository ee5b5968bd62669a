package client_test

import (
	"errors"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chaperone-pdp/chaperone/client"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// pdp is a real Chaperone server on a loopback port.
type pdp struct {
	url      string
	recorder *testkit.Recorder
	hs       *http.Server

	mu      sync.Mutex
	calls   map[string]int // path → HTTP requests that reached the server
	batches []int          // size of every BatchCheck that reached it
	headers []http.Header
}

// bundleWithTTL is the reference bundle answering with cacheTtl ttl.
func bundleWithTTL(t testing.TB, ttl time.Duration) fs.FS {
	t.Helper()
	fsys, err := bundleFS(ttl)
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// bundleFS is the reference bundle answering with cacheTtl ttl.
func bundleFS(ttl time.Duration) (fs.FS, error) {
	out := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, path)
		if err != nil {
			return err
		}
		if path == "manifest.yaml" {
			s := string(b)
			if !strings.Contains(s, "cacheTtl: 0s\n") {
				return errors.New("the reference manifest no longer says cacheTtl: 0s")
			}
			b = []byte(strings.Replace(s, "cacheTtl: 0s\n", "cacheTtl: "+ttl.String()+"\n", 1))
		}
		out[path] = &fstest.MapFile{Data: b}
		return nil
	})
	return out, err
}

// startPDP serves the reference bundle, answering with cacheTtl ttl, on
// a loopback port until the test ends.
func startPDP(t testing.TB, ttl time.Duration, opts ...server.Option) *pdp {
	t.Helper()
	eng := engine.New(testkit.NoConsents{})
	b, err := engine.LoadBundle(bundleWithTTL(t, ttl))
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	p := &pdp{recorder: &testkit.Recorder{}, calls: map[string]int{}}
	opts = append([]server.Option{server.WithRecorder(p.recorder), server.WithMiddleware(p.count)}, opts...)
	p.hs = server.New(eng, v, opts...).HTTPServer()
	p.url = serve(t, p.hs)
	return p
}

// serve runs hs on a free loopback port until the test ends and returns
// its base URL.
func serve(t testing.TB, hs *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// count notes every request that reaches the server.
func (p *pdp) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.calls[r.URL.Path]++
		p.headers = append(p.headers, r.Header.Clone())
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

const (
	checkPath = "/chaperone.v1.DecisionService/Check"
	batchPath = "/chaperone.v1.DecisionService/BatchCheck"
)

// callsTo is how many requests reached path.
func (p *pdp) callsTo(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[path]
}

// decided is how many decisions the server made (and recorded).
func (p *pdp) decided() int { return len(p.recorder.All()) }

// allowReq is a request the reference bundle allows: a clinician reading
// an Observation of its own organization for treatment.
func allowReq() *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{
			Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1",
		},
		Action: "read",
		Resource: &chaperonev1.Resource{
			Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1",
		},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{CorrelationId: "c-1"},
	}
}

// denyReq is allowReq about a resource of another organization, which the
// reference bundle denies.
func denyReq() *chaperonev1.CheckRequest {
	r := allowReq()
	r.Resource.Organization = "Organization/o2"
	return r
}

// codes lists resp's reason codes.
func codes(resp *chaperonev1.CheckResponse) []string {
	var out []string
	for _, r := range resp.GetReasons() {
		out = append(out, r.GetCode())
	}
	return out
}

// clock is a settable clock for cache expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// generous is a deadline no loopback call of a test reaches, even under
// the race detector on a busy machine.
func generous() client.Option { return client.WithTimeout(time.Minute) }
