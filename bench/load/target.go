package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/authzen"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// BaseURL turns host:port into http://host:port; URLs are kept.
func BaseURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}

// checkPath is DecisionService.Check's HTTP path.
const checkPath = "/" + chaperonev1connect.DecisionServiceName + "/Check"

// newTarget prepares the request bodies once and returns a constructor of
// per-worker senders and a func releasing the connections.
func newTarget(cfg *Config) (func() sender, func(), error) {
	base := BaseURL(cfg.Addr)
	tr := &http.Transport{
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		MaxConnsPerHost:     cfg.Concurrency,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	closeH1 := tr.CloseIdleConnections
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}
	// h1 posts bodies over HTTP/1.1: the generator's own client for
	// http://, net/http for https://. encode makes a body per request
	// with distinct ids.
	h1 := func(path, contentType string, encode func(*chaperonev1.CheckRequest) ([]byte, error), decode func([]byte) (string, error)) (func() sender, func(), error) {
		bodies := make([][]byte, len(cfg.Requests))
		for i, r := range cfg.Requests {
			b, err := encode(r)
			if err != nil {
				return nil, nil, fmt.Errorf("request %d: %w", i, err)
			}
			bodies[i] = b
		}
		worker := 0
		distinct := func() *distinctBodies {
			worker++
			if !cfg.DistinctIDs {
				return nil
			}
			return newDistinctBodies(worker, cfg.Requests, encode)
		}
		if strings.HasPrefix(base, "https://") {
			return func() sender {
				return &httpSender{client: client, url: base + path, contentType: contentType, bodies: bodies, distinct: distinct(), decode: decode}
			}, closeH1, nil
		}
		addr, head, reqs, err := newH1Requests(base, path, contentType, bodies)
		if err != nil {
			return nil, nil, err
		}
		var senders []*h1Sender
		closeAll := func() {
			for _, s := range senders {
				s.close()
			}
		}
		return func() sender {
			s := &h1Sender{addr: addr, reqs: reqs, timeout: cfg.Timeout, decode: decode}
			if d := distinct(); d != nil {
				s.render = func(dst []byte, i int) ([]byte, error) {
					b, err := d.body(i)
					if err != nil {
						return nil, err
					}
					return appendH1Request(dst, head, b), nil
				}
			}
			senders = append(senders, s)
			return s
		}, closeAll, nil
	}

	switch {
	case cfg.Target == TargetOPA:
		if cfg.Batch > 1 || cfg.DecisionIDs != nil {
			return nil, nil, fmt.Errorf("target opa: no batches or decision ids")
		}
		if cfg.Protocol != ProtocolJSON {
			return nil, nil, fmt.Errorf("target opa speaks only the json protocol, not %s", cfg.Protocol)
		}
		if !strings.HasPrefix(cfg.OPAPath, "/v1/data/") {
			return nil, nil, fmt.Errorf("opa path %q: want /v1/data/…", cfg.OPAPath)
		}
		return h1(cfg.OPAPath, "application/json", opaBody, decodeOPA)
	case cfg.Target != TargetChaperone:
		return nil, nil, fmt.Errorf("unknown target %q (want chaperone or opa)", cfg.Target)
	}

	if (cfg.Batch > 1 || cfg.DecisionIDs != nil) && cfg.Protocol != ProtocolExtAuthz && cfg.Protocol != ProtocolForward {
		return newClientTarget(cfg, base)
	}
	switch cfg.Protocol {
	case ProtocolConnect:
		return h1(checkPath, "application/proto", func(r *chaperonev1.CheckRequest) ([]byte, error) { return proto.Marshal(r) }, decodeProto)
	case ProtocolJSON:
		return h1(checkPath, "application/json", func(r *chaperonev1.CheckRequest) ([]byte, error) { return protojson.Marshal(r) }, decodeConnectJSON)
	case ProtocolAuthZEN:
		return h1(authzen.EvaluationPath, "application/json", authzen.Encode, decodeAuthZEN)
	case ProtocolExtAuthz:
		return newExtAuthzTarget(cfg, base)
	case ProtocolForward:
		return newForwardTarget(cfg, base)
	case ProtocolGRPC:
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		h2 := &http.Transport{Protocols: &protocols, DisableCompression: true}
		c := chaperonev1connect.NewDecisionServiceClient(&http.Client{Transport: h2, Timeout: cfg.Timeout}, base, connect.WithGRPC())
		worker := 0
		return func() sender {
			worker++
			s := &grpcSender{client: c, requests: cfg.Requests}
			if cfg.DistinctIDs {
				s.distinct = newDistinctBodies(worker, cfg.Requests, nil)
			}
			return s
		}, h2.CloseIdleConnections, nil
	default:
		return nil, nil, fmt.Errorf("unknown protocol %q (want connect, grpc, json, authzen, ext-authz or forward)", cfg.Protocol)
	}
}

// OPABodies renders requests as OPA data API bodies, {"input": <request in
// proto3 JSON with every field present>}.
func OPABodies(reqs []*chaperonev1.CheckRequest) ([][]byte, error) {
	bodies := make([][]byte, len(reqs))
	for i, r := range reqs {
		b, err := opaBody(r)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		bodies[i] = b
	}
	return bodies, nil
}

func opaBody(r *chaperonev1.CheckRequest) ([]byte, error) {
	in, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(`{"input":`), in...), '}'), nil
}

// httpSender posts pre-encoded bodies over HTTP/1.1 keep-alive connections.
type httpSender struct {
	client      *http.Client
	url         string
	contentType string
	bodies      [][]byte
	distinct    *distinctBodies // nil: bodies as they are
	decode      func([]byte) (string, error)
	buf         bytes.Buffer
	rd          bytes.Reader
}

func (s *httpSender) send(ctx context.Context, i int) outcome {
	body := s.bodies[i]
	if s.distinct != nil {
		var err error
		if body, err = s.distinct.body(i); err != nil {
			return outcome{code: "internal"}
		}
	}
	s.rd.Reset(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, &s.rd)
	if err != nil {
		return outcome{code: "internal"}
	}
	req.ContentLength = int64(len(body))
	req.Header["Content-Type"] = []string{s.contentType}
	resp, err := s.client.Do(req)
	if err != nil {
		return outcome{code: transportCode(err)}
	}
	s.buf.Reset()
	_, err = s.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return outcome{code: transportCode(err)}
	}
	if resp.StatusCode != http.StatusOK {
		return outcome{code: httpErrorCode(resp.StatusCode, s.buf.Bytes())}
	}
	d, err := s.decode(s.buf.Bytes())
	if err != nil {
		return outcome{code: "bad_response"}
	}
	return outcome{decision: d}
}

// grpcSender calls Check with the Connect client over gRPC.
type grpcSender struct {
	client   chaperonev1connect.DecisionServiceClient
	requests []*chaperonev1.CheckRequest
	distinct *distinctBodies // nil: requests as they are
}

func (s *grpcSender) send(ctx context.Context, i int) outcome {
	req := s.requests[i]
	if s.distinct != nil {
		req = s.distinct.request(i)
	}
	resp, err := s.client.Check(ctx, connect.NewRequest(req))
	if err != nil {
		return outcome{code: connect.CodeOf(err).String()}
	}
	return outcome{decision: decisionName(resp.Msg.GetDecision())}
}

func decisionName(d chaperonev1.Decision) string {
	return strings.TrimPrefix(d.String(), "DECISION_")
}

// decodeProto reads the decision (field 1) of a CheckResponse without
// decoding the rest.
func decodeProto(b []byte) (string, error) {
	d := chaperonev1.Decision_DECISION_UNSPECIFIED
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return "", protowire.ParseError(n)
			}
			d = chaperonev1.Decision(v)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return decisionName(d), nil
}

func decodeConnectJSON(b []byte) (string, error) {
	var r struct {
		Decision string `json:"decision"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	if r.Decision == "" {
		return "UNSPECIFIED", nil
	}
	return strings.TrimPrefix(r.Decision, "DECISION_"), nil
}

// decodeAuthZEN reads an AuthZEN decision as ALLOW or DENY.
func decodeAuthZEN(b []byte) (string, error) {
	var r struct {
		Decision *bool `json:"decision"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	switch {
	case r.Decision == nil:
		return "UNSPECIFIED", nil
	case *r.Decision:
		return "ALLOW", nil
	}
	return "DENY", nil
}

func decodeOPA(b []byte) (string, error) {
	var r struct {
		Result *struct {
			Decision string `json:"decision"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	if r.Result == nil {
		return "UNDEFINED", nil
	}
	return r.Result.Decision, nil
}

// httpErrorCode is the Connect error code of an error body, or http_<status>.
func httpErrorCode(status int, body []byte) string {
	var e struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return e.Code
	}
	return "http_" + strconv.Itoa(status)
}

func transportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "deadline_exceeded"
	default:
		return "unavailable"
	}
}
