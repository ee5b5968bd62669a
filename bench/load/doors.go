package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/gateway"
)

// gatewayRequests renders every request as the HTTP request a gateway
// asks about, with end-user tokens valid for the whole run.
func gatewayRequests(cfg *Config) ([]HTTPRequest, error) {
	if cfg.Gateway == nil {
		return nil, fmt.Errorf("protocol %s: no gateway (the server's gateway file and the key that signs its end users' tokens)", cfg.Protocol)
	}
	if cfg.Batch > 1 || cfg.DecisionIDs != nil {
		return nil, fmt.Errorf("protocol %s: no batches or decision ids", cfg.Protocol)
	}
	// Valid from a minute ago (clock skew) until well after the run.
	t, err := cfg.Gateway.tokens(time.Now().Add(-time.Minute).Truncate(time.Second), cfg.Warmup+cfg.Duration+cfg.Timeout+5*time.Minute)
	if err != nil {
		return nil, err
	}
	out := make([]HTTPRequest, len(cfg.Requests))
	for i, r := range cfg.Requests {
		if out[i], err = cfg.Gateway.http(t, r); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
	}
	return out, nil
}

// envoyRequest is the ext_authz CheckRequest Envoy sends for h: the
// pseudo-headers and the headers of a browser's FHIR request, the end
// user's token and the purpose of use among them.
func envoyRequest(h HTTPRequest, host string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority":        host,
		":method":           h.Method,
		":path":             h.URI,
		":scheme":           "https",
		"accept":            "application/fhir+json",
		"authorization":     h.Authorization,
		"user-agent":        "chaperone-bench",
		"x-forwarded-proto": "https",
		"x-request-id":      "5f3c1e1a-4b7d-4c36-9d41-0c1f7a0e2b55",
	}
	if h.PurposeHeader != "" {
		headers[strings.ToLower(h.PurposeHeader)] = h.Purpose
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: "spiffe://bench.invalid/ns/app/sa/web"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: h.Method, Path: h.URI, Host: host, Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers,
		}},
	}}
}

// fhirHost is the Host of the FHIR requests the gateway doors are asked
// about.
const fhirHost = "fhir.bench.invalid"

// envoyWindow is the HTTP/2 stream and connection window Envoy's HTTP/2
// clients announce by default (initial_stream_window_size and
// initial_connection_window_size, 256 MiB).
const envoyWindow = 256 << 20

// newExtAuthzTarget asks Envoy's ext_authz Check over gRPC (grpc-go, the
// messages of go-control-plane): one HTTP/2 connection per worker, as
// each Envoy worker thread keeps its own (or Config.Connections shared by
// the workers in turn: an Envoy with fewer worker threads than requests
// in flight), with Envoy's static flow control windows. grpc-go's
// default, a window sized by bandwidth-delay probes, pings the server
// after a response (and the server answers) where Envoy sends nothing:
// that cost the server about 10% more CPU per Check here.
func newExtAuthzTarget(cfg *Config, base string) (func() sender, func(), error) {
	hs, err := gatewayRequests(cfg)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("address %q: want host:port or a URL", base)
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	reqs := make([]*authv3.CheckRequest, len(hs))
	for i, h := range hs {
		reqs[i] = envoyRequest(h, fhirHost)
	}
	var conns []*grpc.ClientConn
	worker := 0
	newSender := func() sender {
		worker++
		var cc *grpc.ClientConn
		if n := cfg.Connections; n > 0 && len(conns) >= n {
			cc = conns[(worker-1)%n]
		} else {
			var err error
			cc, err = grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds),
				grpc.WithStaticStreamWindowSize(envoyWindow), grpc.WithStaticConnWindowSize(envoyWindow))
			if err != nil {
				return failing{code: "internal"}
			}
			conns = append(conns, cc)
		}
		s := &extAuthzSender{client: authv3.NewAuthorizationClient(cc), reqs: reqs}
		if cfg.DistinctIDs {
			s.distinct = newDistinctBodies(worker, cfg.Requests, nil)
			s.g, s.hs = cfg.Gateway, hs
		}
		return s
	}
	closeAll := func() {
		for _, cc := range conns {
			_ = cc.Close()
		}
	}
	return newSender, closeAll, nil
}

// failing is a sender that could not be made: every request fails.
type failing struct{ code string }

func (f failing) send(context.Context, int) outcome { return outcome{code: f.code} }

// extAuthzSender asks ext_authz Check.
type extAuthzSender struct {
	client authv3.AuthorizationClient
	reqs   []*authv3.CheckRequest
	// With distinct ids: the requests are made again with the path of
	// each request's own id.
	distinct *distinctBodies
	g        *Gateway
	hs       []HTTPRequest
}

func (s *extAuthzSender) send(ctx context.Context, i int) outcome {
	req := s.reqs[i]
	if s.distinct != nil {
		h, err := s.g.withID(s.hs[i], s.distinct.request(i))
		if err != nil {
			return outcome{code: "internal"}
		}
		req = envoyRequest(h, fhirHost)
	}
	resp, err := s.client.Check(ctx, req)
	if err != nil {
		return outcome{code: connect.Code(status.Code(err)).String()}
	}
	return extAuthzOutcome(resp)
}

// extAuthzOutcome reads an ext_authz answer: OK is ALLOW, PERMISSION_DENIED
// with HTTP 403 DENY; a 401 (the end-user token refused) is an error.
func extAuthzOutcome(resp *authv3.CheckResponse) outcome {
	switch codes.Code(resp.GetStatus().GetCode()) {
	case codes.OK:
		if resp.GetOkResponse() == nil {
			return outcome{code: "bad_response"}
		}
		return outcome{decision: "ALLOW"}
	case codes.PermissionDenied:
		switch st := resp.GetDeniedResponse().GetStatus().GetCode(); st {
		case http.StatusForbidden:
			return outcome{decision: "DENY"}
		default:
			return outcome{code: fmt.Sprintf("http_%d", st)}
		}
	}
	return outcome{code: "bad_response"}
}

// forwardRequest appends the HTTP/1.1 sub-request nginx's auth_request
// sends to the forward-auth door for h: GET with the original method and
// URI in X-Original-Method and X-Original-URI and the client's headers,
// the end user's token and the purpose of use among them.
func forwardRequest(dst []byte, host string, h HTTPRequest) []byte {
	dst = append(dst, "GET "+gateway.ForwardPath+" HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nX-Original-Method: "...)
	dst = append(dst, h.Method...)
	dst = append(dst, "\r\nX-Original-URI: "...)
	dst = append(dst, h.URI...)
	dst = append(dst, "\r\nAccept: application/fhir+json\r\nUser-Agent: chaperone-bench\r\nAuthorization: "...)
	dst = append(dst, h.Authorization...)
	if h.PurposeHeader != "" {
		dst = append(dst, "\r\n"...)
		dst = append(dst, h.PurposeHeader...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Purpose...)
	}
	return append(dst, "\r\n\r\n"...)
}

// newForwardTarget asks the forward-auth door as nginx does, over the
// generator's own HTTP/1.1 client: 200 is ALLOW, 403 DENY.
func newForwardTarget(cfg *Config, base string) (func() sender, func(), error) {
	hs, err := gatewayRequests(cfg)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, nil, fmt.Errorf("address %q: protocol forward wants host:port or http://host:port", base)
	}
	addr, _, err := h1Head(base, gateway.ForwardPath, "")
	if err != nil {
		return nil, nil, err
	}
	reqs := make([][]byte, len(hs))
	for i, h := range hs {
		reqs[i] = forwardRequest(nil, u.Host, h)
	}
	allow := func([]byte) (string, error) { return "ALLOW", nil }
	var senders []*h1Sender
	worker := 0
	return func() sender {
			worker++
			s := &h1Sender{addr: addr, reqs: reqs, timeout: cfg.Timeout, decode: allow, denyStatus: http.StatusForbidden}
			if cfg.DistinctIDs {
				d, g := newDistinctBodies(worker, cfg.Requests, nil), cfg.Gateway
				s.render = func(dst []byte, i int) ([]byte, error) {
					h, err := g.withID(hs[i], d.request(i))
					if err != nil {
						return nil, err
					}
					return forwardRequest(dst, u.Host, h), nil
				}
			}
			senders = append(senders, s)
			return s
		}, func() {
			for _, s := range senders {
				s.close()
			}
		}, nil
}
