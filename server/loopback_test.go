package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// TestLoopbackHosts: without authentication on loopback, a request must
// name a loopback host and, from a browser, come from a loopback origin
// (before, Host: attacker.example reached every service: DNS rebinding).
func TestLoopbackHosts(t *testing.T) {
	t.Parallel()
	g := startGuarded(t, server.GuardConfig{LoopbackHosts: true}, nil)
	body, err := protojson.Marshal(checkRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	port := strings.TrimPrefix(g.base, "http://127.0.0.1")
	for _, tc := range []struct {
		name, host, origin string
		wantOK             bool
	}{
		{"127.0.0.1", "127.0.0.1" + port, "", true},
		{"localhost", "localhost" + port, "", true},
		{"LOCALHOST.", "LOCALHOST." + port, "", true},
		{"::1", "[::1]" + port, "", true},
		{"127.9.9.9 without port", "127.9.9.9", "", true},
		{"loopback origin", "localhost" + port, "http://localhost:3000", true},
		{"rebound name", "attacker.example" + port, "", false},
		{"rebound name without port", "attacker.example", "", false},
		{"localhost subdomain", "evil.localhost" + port, "", false},
		{"host spelled with localhost inside", "localhost.attacker.example" + port, "", false},
		{"private address", "10.0.0.1" + port, "", false},
		{"foreign origin", "localhost" + port, "https://attacker.example", false},
		{"null origin", "localhost" + port, "null", false},
		{"origin with loopback as user", "localhost" + port, "http://127.0.0.1@attacker.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodPost, g.base+"/chaperone.v1.DecisionService/Check", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(testCaseHeader, "host-"+tc.name)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ok := resp.StatusCode == http.StatusOK; ok != tc.wantOK {
				t.Fatalf("%s %s", resp.Status, msg)
			}
			if !tc.wantOK && resp.StatusCode != http.StatusForbidden {
				t.Errorf("refused with %s, want 403 permission_denied", resp.Status)
			}
		})
	}
	// Without the option (authentication configured, or --insecure), any
	// Host is answered.
	open := startGuarded(t, server.GuardConfig{}, nil)
	req, _ := http.NewRequest(http.MethodPost, open.base+"/chaperone.v1.DecisionService/Check", bytes.NewReader(body))
	req.Host = "pdp.internal"
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("without LoopbackHosts: %s", resp.Status)
	}
}

// TestSlowBodyIsCut: connections that trickle a declared 4 MiB body are cut
// off after the read timeout (before, they stayed open indefinitely).
func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	const readTimeout = 300 * time.Millisecond
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(engine.New(noConsents{}), v, server.WithReadTimeout(readTimeout)).HTTPServer()
	if hs.ReadTimeout != readTimeout {
		t.Fatalf("ReadTimeout %v", hs.ReadTimeout)
	}
	if d := server.New(engine.New(noConsents{}), v).HTTPServer().ReadTimeout; d != server.DefaultReadTimeout || d <= 0 {
		t.Errorf("default ReadTimeout %v", d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()

	// HTTP/1.1: raw connections, one byte every 20ms, for at most 5s.
	const conns = 30
	const bound = 5 * time.Second
	var wg sync.WaitGroup
	lasted := make(chan time.Duration, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			fmt.Fprintf(c, "POST /chaperone.v1.DecisionService/Check HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 4<<20)
			for time.Since(start) < bound {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte(" ")); err != nil {
					break // the server closed the connection
				}
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				var b [512]byte
				if _, err := c.Read(b[:]); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue // nothing yet: trickle on
					}
					break // EOF or reset: cut off
				}
				// An answer (an error status): the server gave up on the body.
				break
			}
			lasted <- time.Since(start)
		}()
	}
	wg.Wait()
	close(lasted)
	for d := range lasted {
		if d >= bound {
			t.Fatalf("a trickling HTTP/1.1 connection lasted %v, read timeout %v", d, readTimeout)
		}
	}

	// HTTP/2 (h2c): the stream's body read is cut off the same way.
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		for start := time.Now(); time.Since(start) < bound; time.Sleep(20 * time.Millisecond) {
			if _, err := pw.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/chaperone.v1.DecisionService/Check", pr)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = 4 << 20
	start := time.Now()
	resp, err := h2cClient().Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("h2c trickle: %s", resp.Status)
		}
	}
	pr.CloseWithError(errors.New("done"))
	if d := time.Since(start); d >= bound {
		t.Errorf("a trickling h2c stream lasted %v", d)
	}
}
