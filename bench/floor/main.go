// Command floor is the transport floor of the served benchmarks: a plain
// net/http HTTP/1.1 server that answers every Connect unary POST with the
// same pre-encoded CheckResponse (ALLOW), doing no validation, no decision
// and no audit. Driven by `chaperone bench --protocol connect` like
// `chaperone serve`, it shows what the Go HTTP stack, the kernel's loopback
// and the machine's scheduling cost on their own: no server on this stack
// can answer faster, so its latency and CPU per request bound what
// Chaperone can reach on the same machine.
//
//	go run ./bench/floor --addr 127.0.0.1:18789
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18789", "loopback address to listen on")
	flag.Parse()
	body, err := proto.Marshal(&chaperonev1.CheckResponse{
		Decision: chaperonev1.Decision_DECISION_ALLOW, DecisionId: "00000000-0000-7000-8000-000000000000", BundleRevision: "floor",
	})
	if err != nil {
		log.Fatal(err)
	}
	length := fmt.Sprint(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header()["Content-Type"] = []string{"application/proto"}
		w.Header()["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		log.Fatalf("%s: loopback addresses only", ln.Addr())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		<-c
		_ = srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "floor listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
