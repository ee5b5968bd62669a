package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// TestHTTP2Handlers: HTTP/2 requests run on the server's warm goroutines
// and end as on the stream's own: many at once (more than the pool
// holds) each get their own answer, a handler that aborts
// (http.ErrAbortHandler) or calls runtime.Goexit resets its stream only,
// and the server goes on answering, over h2c and HTTP/1.1 alike.
func TestHTTP2Handlers(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	// Requests wait at the gate until enough are in flight: more than the
	// pool's workers, so some run on their stream's goroutine.
	const inFlight = 40
	var gate sync.WaitGroup
	gate.Add(inFlight)
	srv := server.New(engine.New(noConsents{}), v,
		server.WithHTTPHandler("GET /echo/{n}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("gate") != "" {
				gate.Done()
				gate.Wait()
			}
			fmt.Fprintf(w, "%s %s", r.Proto, r.PathValue("n"))
		})),
		server.WithHTTPHandler("GET /abort", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic(http.ErrAbortHandler)
		})),
		server.WithHTTPHandler("GET /goexit", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			runtime.Goexit()
		})),
	)
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()

	get := func(c *http.Client, path string) (string, error) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, base+path, nil)
		if err != nil {
			return "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	h2, h1 := h2cClient(), &http.Client{}

	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	for i := range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := get(h2, fmt.Sprintf("/echo/%d?gate=1", i))
			if want := fmt.Sprintf("HTTP/2.0 %d", i); err != nil || got != want {
				errs <- fmt.Errorf("request %d: %q, %v; want %q", i, got, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for _, c := range []struct {
		name   string
		client *http.Client
		proto  string
	}{{"h2c", h2, "HTTP/2.0"}, {"http1", h1, "HTTP/1.1"}} {
		for _, path := range []string{"/abort", "/goexit"} {
			for i := range 3 {
				if got, err := get(c.client, path); err == nil {
					t.Errorf("%s %s: answered %q, want the stream reset", c.name, path, got)
				}
				if got, err := get(c.client, fmt.Sprintf("/echo/%d", i)); err != nil || got != fmt.Sprintf("%s %d", c.proto, i) {
					t.Errorf("%s after %s: %q, %v", c.name, path, got, err)
				}
			}
		}
	}
}
