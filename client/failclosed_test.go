package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// fakePDP is a Connect DecisionService on a loopback port that answers
// whatever its functions say: the misbehaving PDP the client must not
// trust.
type fakePDP struct {
	check func(*chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, error)
	batch func(*chaperonev1.BatchCheckRequest) (*chaperonev1.BatchCheckResponse, error)
	calls atomic.Int64
}

func (f *fakePDP) Check(_ context.Context, r *connect.Request[chaperonev1.CheckRequest]) (*connect.Response[chaperonev1.CheckResponse], error) {
	f.calls.Add(1)
	resp, err := f.check(r.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (f *fakePDP) BatchCheck(_ context.Context, r *connect.Request[chaperonev1.BatchCheckRequest]) (*connect.Response[chaperonev1.BatchCheckResponse], error) {
	f.calls.Add(1)
	resp, err := f.batch(r.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// startFake serves f on a loopback port.
func startFake(t *testing.T, f *fakePDP) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(chaperonev1connect.NewDecisionServiceHandler(f))
	return serve(t, &http.Server{Handler: mux})
}

// startHTTP serves h on a loopback port.
func startHTTP(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	return serve(t, &http.Server{Handler: h})
}

func allowWithTTL() *chaperonev1.CheckResponse {
	return &chaperonev1.CheckResponse{
		Decision: chaperonev1.Decision_DECISION_ALLOW, DecisionId: "d1",
		Obligations: &chaperonev1.Obligations{}, CacheTtl: durationpb.New(time.Hour),
	}
}

func TestFailClosed(t *testing.T) {
	t.Parallel()
	stopped := startPDP(t, time.Hour)
	stopped.hs.Close()

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var slowCalls atomic.Int64
	slow := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		slowCalls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})

	garbage := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/proto")
		w.Write([]byte("\xff\xff\xff not a protobuf message"))
	})
	htmlGateway := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>502 Bad Gateway</html>"))
	})
	answer := func(resp *chaperonev1.CheckResponse, err error) string {
		return startFake(t, &fakePDP{
			check: func(*chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, error) { return resp, err },
			batch: func(r *chaperonev1.BatchCheckRequest) (*chaperonev1.BatchCheckResponse, error) {
				out := &chaperonev1.BatchCheckResponse{}
				for range r.GetRequests() {
					out.Responses = append(out.Responses, resp)
				}
				return out, err
			},
		})
	}
	unspecified := answer(&chaperonev1.CheckResponse{DecisionId: "d", CacheTtl: durationpb.New(time.Hour)}, nil)
	unknown := answer(&chaperonev1.CheckResponse{Decision: 7, DecisionId: "d", CacheTtl: durationpb.New(time.Hour)}, nil)
	internal := answer(nil, connect.NewError(connect.CodeInternal, errors.New("boom")))
	unauthenticated := answer(nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no token")))
	short := startFake(t, &fakePDP{
		check: func(*chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, error) { return allowWithTTL(), nil },
		batch: func(r *chaperonev1.BatchCheckRequest) (*chaperonev1.BatchCheckResponse, error) {
			return &chaperonev1.BatchCheckResponse{Responses: []*chaperonev1.CheckResponse{allowWithTTL()}}, nil
		},
	})

	tests := []struct {
		name    string
		url     string
		opts    []client.Option
		ctx     func() context.Context
		code    string
		message string // a part of the reason's message
	}{
		{name: "stopped", url: stopped.url, code: client.ReasonUnavailable, message: "unavailable"},
		{name: "slow", url: slow, opts: []client.Option{client.WithTimeout(20 * time.Millisecond)}, code: client.ReasonUnavailable, message: "deadline_exceeded"},
		{name: "caller gave up", url: stopped.url, ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, code: client.ReasonUnavailable, message: "canceled"},
		{name: "garbage body", url: garbage, code: client.ReasonBadResponse, message: "cannot be read"},
		{name: "html 502", url: htmlGateway, code: client.ReasonUnavailable, message: "unavailable"},
		{name: "internal", url: internal, code: client.ReasonUnavailable, message: "internal"},
		{name: "unauthenticated", url: unauthenticated, code: client.ReasonUnavailable, message: "unauthenticated"},
		{name: "unspecified", url: unspecified, code: client.ReasonBadResponse, message: "DECISION_UNSPECIFIED"},
		{name: "unknown decision", url: unknown, code: client.ReasonBadResponse},
		{name: "batch of the wrong length", url: short, code: client.ReasonBadResponse, message: "2 requests with 1"},
		{name: "stopped, coalesced", url: stopped.url, opts: []client.Option{client.WithBatchWindow(time.Millisecond)}, code: client.ReasonUnavailable, message: "unavailable"},
		{name: "slow, coalesced", url: slow, opts: []client.Option{client.WithBatchWindow(time.Millisecond), client.WithTimeout(20 * time.Millisecond)}, code: client.ReasonUnavailable, message: "deadline_exceeded"},
		{name: "unspecified, coalesced", url: unspecified, opts: []client.Option{client.WithBatchWindow(time.Millisecond)}, code: client.ReasonBadResponse, message: "DECISION_UNSPECIFIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := client.New(tt.url, append([]client.Option{generous(), client.WithCache(10)}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			var answers []*chaperonev1.CheckResponse
			if tt.name != "batch of the wrong length" {
				answers = append(answers, c.Check(ctx, allowReq()), c.Check(ctx, allowReq()))
			}
			answers = append(answers, c.BatchCheck(ctx, []*chaperonev1.CheckRequest{allowReq(), denyReq()})...)
			for i, resp := range answers {
				if resp.GetDecision() != chaperonev1.Decision_DECISION_DENY {
					t.Fatalf("answer %d: %s, want DENY", i, resp.GetDecision())
				}
				if got := codes(resp); len(got) != 1 || got[0] != tt.code {
					t.Fatalf("answer %d: reasons %v, want [%s]", i, got, tt.code)
				}
				if !strings.Contains(resp.GetReasons()[0].GetMessage(), tt.message) {
					t.Errorf("answer %d: message %q does not say %q", i, resp.GetReasons()[0].GetMessage(), tt.message)
				}
				ob := resp.GetObligations()
				if ob == nil || len(ob.GetMaskPaths())+len(ob.GetRedactLabels())+len(ob.GetAuditTags()) != 0 || ob.GetPerEntryCheck() || resp.GetCacheTtl() != nil {
					t.Errorf("answer %d: obligations %v, ttl %v; want none", i, ob, resp.GetCacheTtl())
				}
			}
			if n := client.CacheLen(c); n != 0 {
				t.Errorf("%d failures cached", n)
			}
		})
	}
	// The slow server saw the calls: the deadline, not a refused
	// connection, ended them.
	t.Cleanup(func() {
		if slowCalls.Load() == 0 {
			t.Error("the slow server was never called")
		}
	})
}

// TestNoStaleFailure: a failure is not kept, so the next call asks again
// and gets the server's answer once it has one.
func TestNoStaleFailure(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	f := &fakePDP{check: func(*chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, error) {
		if !healthy.Load() {
			// A DENY for an outage, which the server marks reusable.
			return &chaperonev1.CheckResponse{
				Decision: chaperonev1.Decision_DECISION_DENY, DecisionId: "d0", CacheTtl: durationpb.New(time.Hour),
				Reasons: []*chaperonev1.Reason{{Code: "CONSENT_UNAVAILABLE"}},
			}, nil
		}
		return allowWithTTL(), nil
	}}
	c, err := client.New(startFake(t, f), generous(), client.WithCache(10))
	if err != nil {
		t.Fatal(err)
	}
	if resp := c.Check(t.Context(), allowReq()); resp.GetDecision() != chaperonev1.Decision_DECISION_DENY {
		t.Fatalf("during the outage: %s", resp.GetDecision())
	}
	healthy.Store(true)
	if resp := c.Check(t.Context(), allowReq()); resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		t.Fatalf("after the outage: %s %v, want the server's ALLOW", resp.GetDecision(), codes(resp))
	}
	c.Check(t.Context(), allowReq())
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2 (the ALLOW is cached, the outage DENY is not)", n)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		opts []client.Option
	}{
		{"no scheme", "127.0.0.1:8787", nil},
		{"other scheme", "ftp://127.0.0.1", nil},
		{"no host", "http://", nil},
		{"zero timeout", "http://127.0.0.1:1", []client.Option{client.WithTimeout(0)}},
		{"negative cache", "http://127.0.0.1:1", []client.Option{client.WithCache(-1)}},
		{"negative max ttl", "http://127.0.0.1:1", []client.Option{client.WithMaxTTL(-time.Second)}},
		{"negative window", "http://127.0.0.1:1", []client.Option{client.WithBatchWindow(-time.Second)}},
		{"batch over the server's limit", "http://127.0.0.1:1", []client.Option{client.WithMaxBatch(1001)}},
		{"empty batch", "http://127.0.0.1:1", []client.Option{client.WithMaxBatch(0)}},
		{"no clock", "http://127.0.0.1:1", []client.Option{client.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if c, err := client.New(tt.url, tt.opts...); err == nil {
				t.Fatalf("New accepted it: %v", c)
			}
		})
	}
}
