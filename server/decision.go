package server

import (
	"context"
	"log/slog"

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

// decisionService serves Check and BatchCheck. Requests reach it validated.
type decisionService struct {
	engine   *engine.Engine
	recorder Recorder // nil: decisions are not audited
	logger   *slog.Logger
}

var _ chaperonev1connect.DecisionServiceHandler = (*decisionService)(nil)

func (d *decisionService) Check(ctx context.Context, req *connect.Request[chaperonev1.CheckRequest]) (*connect.Response[chaperonev1.CheckResponse], error) {
	return connect.NewResponse(d.decide(ctx, CallerName(ctx), req.Msg)), nil
}

func (d *decisionService) BatchCheck(ctx context.Context, req *connect.Request[chaperonev1.BatchCheckRequest]) (*connect.Response[chaperonev1.BatchCheckResponse], error) {
	out := &chaperonev1.BatchCheckResponse{Responses: make([]*chaperonev1.CheckResponse, len(req.Msg.GetRequests()))}
	caller := CallerName(ctx)
	for i, r := range req.Msg.GetRequests() {
		out.Responses[i] = d.decide(ctx, caller, r)
	}
	return connect.NewResponse(out), nil
}

// decide asks the engine and records the decision.
func (d *decisionService) decide(ctx context.Context, caller string, req *chaperonev1.CheckRequest) *chaperonev1.CheckResponse {
	// The transport's correlation id (X-Request-Id, traceparent) stands in
	// for a request without one, so the log line and the audit record carry
	// it. Policies never see it, so decisions do not change.
	if cid := CorrelationID(ctx); cid != "" && req.GetContext().GetCorrelationId() == "" {
		if req.Context == nil {
			req.Context = &chaperonev1.Context{}
		}
		req.Context.CorrelationId = cid
	}
	resp := d.engine.Check(ctx, req)
	if d.recorder != nil {
		if err := d.recorder.Record(ctx, caller, req, resp); err != nil {
			d.logger.LogAttrs(ctx, slog.LevelError, "audit record not written; denying",
				slog.String("decision_id", resp.GetDecisionId()), slog.String("error", err.Error()))
			resp = &chaperonev1.CheckResponse{
				Decision:       chaperonev1.Decision_DECISION_DENY,
				Obligations:    &chaperonev1.Obligations{},
				Reasons:        []*chaperonev1.Reason{{Code: "AUDIT_UNAVAILABLE", Message: "the decision could not be audited"}},
				DecisionId:     resp.GetDecisionId(),
				BundleRevision: resp.GetBundleRevision(),
				CacheTtl:       resp.GetCacheTtl(),
			}
		}
	}
	d.logDecision(ctx, req, resp)
	return resp
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
