package server

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// decisionService serves Check and BatchCheck. Requests reach it validated.
type decisionService struct {
	engine *engine.Engine
	logger *slog.Logger
}

var _ chaperonev1connect.DecisionServiceHandler = (*decisionService)(nil)

func (d *decisionService) Check(ctx context.Context, req *connect.Request[chaperonev1.CheckRequest]) (*connect.Response[chaperonev1.CheckResponse], error) {
	resp := d.engine.Check(ctx, req.Msg)
	d.logDecision(ctx, req.Msg, resp)
	return connect.NewResponse(resp), nil
}

func (d *decisionService) BatchCheck(ctx context.Context, req *connect.Request[chaperonev1.BatchCheckRequest]) (*connect.Response[chaperonev1.BatchCheckResponse], error) {
	out := &chaperonev1.BatchCheckResponse{Responses: make([]*chaperonev1.CheckResponse, len(req.Msg.GetRequests()))}
	for i, r := range req.Msg.GetRequests() {
		out.Responses[i] = d.engine.Check(ctx, r)
		d.logDecision(ctx, r, out.Responses[i])
	}
	return connect.NewResponse(out), nil
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
