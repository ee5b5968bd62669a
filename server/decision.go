package server

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// Recorder takes the audit record of a decision before the decision is
// returned (it may queue it and write it later, as audit.Log does). caller
// names who asked, as [CallerName] gives it. An error means the record
// could not be kept; the decision is then replaced by DENY
// AUDIT_UNAVAILABLE (fail closed).
//
// Copy contract: a Recorder may retain req and resp after Record returns
// (audit.Log queues them and copies their identifiers on its writer
// goroutine), so the server never modifies either message once it has
// passed them to Record: a replacement answer is a new message.
type Recorder interface {
	Record(ctx context.Context, caller string, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) error
}

// BatchRecorder is a [Recorder] that takes the decisions of one BatchCheck
// together (audit.Log.RecordAll: with durable acknowledgement they share one
// wait for the disk). It returns nil, or one error per decision (nil where
// kept). The copy contract of [Recorder] holds.
type BatchRecorder interface {
	RecordAll(ctx context.Context, caller string, reqs []*chaperonev1.CheckRequest, resps []*chaperonev1.CheckResponse) []error
}

// decisionService serves Check and BatchCheck. Requests reach it validated.
type decisionService struct {
	engine   *engine.Engine
	recorder Recorder // nil: decisions are not audited
	logger   *slog.Logger
	clock    requestClock
}

// DefaultMaxClockSkew is how far a request's context.time may be from the
// server's clock unless [WithClockSkew] says otherwise.
const DefaultMaxClockSkew = 5 * time.Minute

// requestClock holds the rule for context.time: within maxSkew of now, or
// anything when trusted.
type requestClock struct {
	now     func() time.Time
	maxSkew time.Duration
	trusted bool
}

// check returns an invalid_argument error naming field when the request's
// stated time is too far from the server's clock. The engine decides at
// the server's clock anyway; refusing a far-off time tells a caller whose
// clock is wrong, instead of silently deciding at another instant.
func (c requestClock) check(req *chaperonev1.CheckRequest, field string) error {
	if msg, bad := c.skewed(req); bad {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %s", field, msg))
	}
	return nil
}

// skewed says what is wrong with the request's stated time, bad false
// when nothing is.
func (c requestClock) skewed(req *chaperonev1.CheckRequest) (msg string, bad bool) {
	ts := req.GetContext().GetTime()
	if ts == nil || c.trusted {
		return "", false
	}
	d := ts.AsTime().Sub(c.now())
	if d < -c.maxSkew || d > c.maxSkew {
		return fmt.Sprintf("more than %s from the server's clock (decisions are made at the server's time)", c.maxSkew), true
	}
	return "", false
}

var _ chaperonev1connect.DecisionServiceHandler = (*decisionService)(nil)

func (d *decisionService) Check(ctx context.Context, req *connect.Request[chaperonev1.CheckRequest]) (*connect.Response[chaperonev1.CheckResponse], error) {
	if err := d.clock.check(req.Msg, "context.time"); err != nil {
		return nil, err
	}
	return connect.NewResponse(d.decide(ctx, CallerName(ctx), req.Msg, nil)), nil
}

func (d *decisionService) BatchCheck(ctx context.Context, req *connect.Request[chaperonev1.BatchCheckRequest]) (*connect.Response[chaperonev1.BatchCheckResponse], error) {
	for i, r := range req.Msg.GetRequests() {
		if err := d.clock.check(r, "requests["+strconv.Itoa(i)+"].context.time"); err != nil {
			return nil, err
		}
	}
	reqs := req.Msg.GetRequests()
	out := &chaperonev1.BatchCheckResponse{Responses: make([]*chaperonev1.CheckResponse, len(reqs))}
	caller := CallerName(ctx)
	br, ok := d.recorder.(BatchRecorder)
	if !ok {
		for i, r := range reqs {
			out.Responses[i] = d.decide(ctx, caller, r, nil)
		}
		return connect.NewResponse(out), nil
	}
	for i, r := range reqs {
		out.Responses[i] = d.evaluate(ctx, r)
	}
	errs := br.RecordAll(ctx, caller, reqs, out.Responses)
	for i, r := range reqs {
		if errs != nil && errs[i] != nil {
			out.Responses[i] = d.unaudited(ctx, out.Responses[i], errs[i])
		}
		d.logDecision(ctx, r, out.Responses[i])
	}
	return connect.NewResponse(out), nil
}

// decide asks the engine and records the decision. amend, when not nil,
// may replace the engine's answer before it is recorded (see
// [Server.Decide]).
func (d *decisionService) decide(ctx context.Context, caller string, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
	resp := d.evaluate(ctx, req)
	if amend != nil {
		resp = amend(resp)
	}
	if d.recorder != nil {
		if err := d.recorder.Record(ctx, caller, req, resp); err != nil {
			resp = d.unaudited(ctx, resp, err)
		}
	}
	d.logDecision(ctx, req, resp)
	return resp
}

// evaluate asks the engine.
func (d *decisionService) evaluate(ctx context.Context, req *chaperonev1.CheckRequest) *chaperonev1.CheckResponse {
	// The transport's correlation id (X-Request-Id, traceparent) stands in
	// for a request without one, so the log line and the audit record carry
	// it. Policies never see it, so decisions do not change.
	if cid := CorrelationID(ctx); cid != "" && req.GetContext().GetCorrelationId() == "" {
		if req.Context == nil {
			req.Context = &chaperonev1.Context{}
		}
		req.Context.CorrelationId = cid
	}
	return d.engine.Check(ctx, req)
}

// unaudited is the answer to a decision whose record could not be kept: a
// new message (the recorder may retain resp), DENY AUDIT_UNAVAILABLE.
func (d *decisionService) unaudited(ctx context.Context, resp *chaperonev1.CheckResponse, err error) *chaperonev1.CheckResponse {
	d.logger.LogAttrs(ctx, slog.LevelError, "audit record not written; denying",
		slog.String("decision_id", resp.GetDecisionId()), slog.String("error", err.Error()))
	return &chaperonev1.CheckResponse{
		Decision:       chaperonev1.Decision_DECISION_DENY,
		Obligations:    &chaperonev1.Obligations{},
		Reasons:        []*chaperonev1.Reason{{Code: "AUDIT_UNAVAILABLE", Message: "the decision could not be audited"}},
		DecisionId:     resp.GetDecisionId(),
		BundleRevision: resp.GetBundleRevision(),
		CacheTtl:       resp.GetCacheTtl(),
	}
}

// logDecision writes one debug line per decision: identifiers only, no PHI.
func (d *decisionService) logDecision(ctx context.Context, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) {
	if !d.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	codes := make([]string, len(resp.GetReasons()))
	for i, r := range resp.GetReasons() {
		codes[i] = r.GetCode()
	}
	d.logger.LogAttrs(ctx, slog.LevelDebug, "decision",
		slog.String("decision_id", resp.GetDecisionId()),
		slog.String("decision", resp.GetDecision().String()),
		slog.Any("reasons", codes),
		slog.String("subject", req.GetSubject().GetId()),
		slog.String("action", req.GetAction()),
		slog.String("resource_type", req.GetResource().GetType()),
		slog.String("correlation_id", req.GetContext().GetCorrelationId()),
		slog.String("revision", resp.GetBundleRevision()),
	)
}
