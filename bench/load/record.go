package load

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// idWriter writes answered decision ids, one per line, for several workers.
type idWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func newIDWriter(w io.Writer) *idWriter { return &idWriter{w: bufio.NewWriterSize(w, 256<<10)} }

func (w *idWriter) write(ids ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		_, _ = w.w.WriteString(id)
		_ = w.w.WriteByte('\n')
	}
}

func (w *idWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.w.Flush()
}

// clientSender calls Check, or BatchCheck of Config.Batch requests, with
// the Connect client and keeps the decision ids it is answered: the path
// of --batch and --decision-ids (it builds messages per call, so it is not
// the fastest sender; durability checks, not peak rates, use it).
type clientSender struct {
	client   chaperonev1connect.DecisionServiceClient
	requests []*chaperonev1.CheckRequest
	distinct *distinctBodies
	batch    int
	ids      *idWriter // nil: ids are not kept
	buf      []string
}

// newClientTarget is newTarget for --batch and --decision-ids.
func newClientTarget(cfg *Config, base string) (func() sender, func(), error) {
	var opts []connect.ClientOption
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, DisableCompression: true}
	if cfg.Protocol == ProtocolGRPC {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		tr.Protocols = &protocols
		opts = append(opts, connect.WithGRPC())
	} else if cfg.Protocol == ProtocolJSON {
		opts = append(opts, connect.WithProtoJSON())
	}
	c := chaperonev1connect.NewDecisionServiceClient(&http.Client{Transport: tr, Timeout: cfg.Timeout}, base, opts...)
	var ids *idWriter
	if cfg.DecisionIDs != nil {
		ids = newIDWriter(cfg.DecisionIDs)
	}
	worker := 0
	return func() sender {
			worker++
			s := &clientSender{client: c, requests: cfg.Requests, batch: cfg.Batch, ids: ids}
			if cfg.DistinctIDs || cfg.Batch > 1 {
				s.distinct = newDistinctBodies(worker, cfg.Requests, nil)
			}
			return s
		}, func() {
			tr.CloseIdleConnections()
			if ids != nil {
				ids.flush()
			}
		}, nil
}

func (s *clientSender) request(i int) *chaperonev1.CheckRequest {
	if s.distinct != nil {
		return s.distinct.request(i)
	}
	return s.requests[i]
}

func (s *clientSender) send(ctx context.Context, i int) outcome {
	if s.batch <= 1 {
		resp, err := s.client.Check(ctx, connect.NewRequest(s.request(i)))
		if err != nil {
			return outcome{code: connect.CodeOf(err).String()}
		}
		if s.ids != nil && answered(resp.Msg) {
			s.ids.write(resp.Msg.GetDecisionId())
		}
		return outcome{decision: decisionName(resp.Msg.GetDecision())}
	}
	br := &chaperonev1.BatchCheckRequest{Requests: make([]*chaperonev1.CheckRequest, s.batch)}
	for k := range br.Requests {
		// Each item a message of its own: distinctBodies reuses its copy.
		br.Requests[k] = cloneRequest(s.request((i + k) % len(s.requests)))
	}
	resp, err := s.client.BatchCheck(ctx, connect.NewRequest(br))
	if err != nil {
		return outcome{code: connect.CodeOf(err).String()}
	}
	rs := resp.Msg.GetResponses()
	if s.ids != nil {
		s.buf = s.buf[:0]
		for _, r := range rs {
			if answered(r) {
				s.buf = append(s.buf, r.GetDecisionId())
			}
		}
		s.ids.write(s.buf...)
	}
	if len(rs) == 0 {
		return outcome{code: "bad_response"}
	}
	return outcome{decision: decisionName(rs[0].GetDecision())}
}

// answered reports whether a response is a decision made (not DENY
// AUDIT_UNAVAILABLE, which says no record was kept).
func answered(r *chaperonev1.CheckResponse) bool {
	for _, x := range r.GetReasons() {
		if x.GetCode() == "AUDIT_UNAVAILABLE" {
			return false
		}
	}
	return true
}

func cloneRequest(r *chaperonev1.CheckRequest) *chaperonev1.CheckRequest {
	return proto.Clone(r).(*chaperonev1.CheckRequest)
}
