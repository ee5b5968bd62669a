package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
)

// countingListener counts the writes of the connections it accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestH2CWrites: on a cleartext HTTP/2 connection a unary gRPC answer is
// written with one write (the three frames Go's server flushes one by one
// are held until the one that ends the stream); a response that flushes
// part of its answer and waits still reaches the client (the held bytes
// go out after a moment); large answers arrive whole; HTTP/1.1 is not
// touched.
func TestH2CWrites(t *testing.T) {
	t.Parallel()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	release := make(chan struct{})
	large := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB
	srv := server.New(eng, v,
		server.WithHTTPHandler("GET /partial", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "first part\n")
			w.(http.Flusher).Flush()
			select { // the client must have read the first part
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "second part\n")
		})),
		server.WithHTTPHandler("GET /large", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(large)
		})),
	)
	hs := srv.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	go hs.Serve(server.BufferedListener(countingListener{ln, &writes}))
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()

	t.Run("unary", func(t *testing.T) {
		client := chaperonev1connect.NewDecisionServiceClient(h2cClient(), base, connect.WithGRPC())
		ask := func() {
			if _, err := client.Check(context.Background(), connect.NewRequest(checkRequest(t))); err != nil {
				t.Fatal(err)
			}
		}
		ask() // the connection, its settings and window updates
		const n = 50
		before := writes.Load()
		for range n {
			ask()
		}
		// A few more for window updates and pings; three per answer without
		// coalescing.
		if got := writes.Load() - before; got > n+n/5 {
			t.Errorf("%d writes for %d answers, want about one each", got, n)
		}
	})

	t.Run("partial answer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/partial", nil)
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, len("first part\n"))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first part\n" {
			t.Fatalf("first part: %q, %v", buf, err)
		}
		close(release)
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "second part\n" {
			t.Fatalf("second part: %q, %v", rest, err)
		}
	})

	t.Run("large answers", func(t *testing.T) {
		want := sha256.Sum256(large)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, c := range []*http.Client{h2cClient(), {}} {
					resp, err := c.Get(base + "/large?i=" + strconv.Itoa(i))
					if err != nil {
						t.Error(err)
						return
					}
					got, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || sha256.Sum256(got) != want {
						t.Errorf("%s: %d bytes, %v", resp.Proto, len(got), err)
					}
				}
			}()
		}
		wg.Wait()
	})
}
