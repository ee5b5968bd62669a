package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestH1Sender reads every response framing a server may choose.
func TestH1Sender(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line", http.StatusBadRequest)
			return
		}
		switch string(body) {
		case "length":
			w.Header().Set("Content-Length", "21")
			_, _ = io.WriteString(w, `{"decision":"ALLOW"} `)
		case "chunked":
			_, _ = io.WriteString(w, `{"decision":`)
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, `"DENY"}`)
		case "close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, `{"decision":"ALLOW"}`)
		case "error":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"code":"invalid_argument","message":"action: required"}`)
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()

	bodies := [][]byte{[]byte("length"), []byte("chunked"), []byte("close"), []byte("error"), []byte("teapot")}
	addr, _, reqs, err := newH1Requests(srv.URL, "/decide", "application/json", bodies)
	if err != nil {
		t.Fatal(err)
	}
	s := &h1Sender{addr: addr, reqs: reqs, timeout: 5 * time.Second, decode: decodeConnectJSON}
	defer s.close()
	want := []outcome{{decision: "ALLOW"}, {decision: "DENY"}, {decision: "ALLOW"}, {code: "invalid_argument"}, {code: "http_418"}}
	for round := range 3 { // the connection is reused, or redialled after close
		for i, w := range want {
			if got := s.send(t.Context(), i); got != w {
				t.Errorf("round %d, %s: got %+v, want %+v", round, bodies[i], got, w)
			}
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := s.send(ctx, 0); got.code != "canceled" {
		t.Errorf("cancelled context: got %+v, want code canceled", got)
	}
}

func TestNewH1Requests(t *testing.T) {
	t.Parallel()
	addr, _, reqs, err := newH1Requests("http://127.0.0.1:8787", "/p", "application/proto", [][]byte{[]byte("xyz")})
	if err != nil {
		t.Fatal(err)
	}
	want := "POST /p HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nUser-Agent: chaperone-bench\r\nContent-Type: application/proto\r\nContent-Length: 3\r\n\r\nxyz"
	if addr != "127.0.0.1:8787" || string(reqs[0]) != want {
		t.Errorf("got %q, %q", addr, reqs[0])
	}
	if _, _, _, err := newH1Requests("https://example.test", "/p", "x", nil); err == nil || !strings.Contains(err.Error(), "http://") {
		t.Errorf("https: err = %v", err)
	}
}

// TestDistinctIDs: every request gets a resource id of its own, across
// workers, and a request without an id keeps none.
func TestDistinctIDs(t *testing.T) {
	t.Parallel()
	reqs := []*chaperonev1.CheckRequest{
		{Action: "read", Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1"}},
		{Action: "search", Resource: &chaperonev1.Resource{Type: "Observation"}},
	}
	seen := map[string]bool{}
	for w := 1; w <= 3; w++ {
		d := newDistinctBodies(w, reqs, func(r *chaperonev1.CheckRequest) ([]byte, error) { return proto.Marshal(r) })
		for n := range 100 {
			b, err := d.body(n % 2)
			if err != nil {
				t.Fatal(err)
			}
			var got chaperonev1.CheckRequest
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			id := got.GetResource().GetId()
			if n%2 == 1 {
				if id != "" {
					t.Fatalf("search got id %q", id)
				}
				continue
			}
			if !strings.HasPrefix(id, "o1-") || seen[id] {
				t.Fatalf("id %q: want a new id after o1-", id)
			}
			seen[id] = true
		}
	}
	if reqs[0].GetResource().GetId() != "o1" {
		t.Error("the scenario's request was changed")
	}
}
