package server

import (
	"context"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Explain decides req exactly as [Server.Decide] does (validated, its
// context.time checked against the server's clock, recorded as the
// decision of the caller of ctx, denied AUDIT_UNAVAILABLE when the record
// cannot be kept) and also returns the engine's trace of how each layer
// answered, for the web console's playground. The errors are those of
// [Server.Decide].
func (s *Server) Explain(ctx context.Context, req *chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, *engine.Trace, error) {
	if err := s.validator.Validate(req); err != nil {
		return nil, nil, err
	}
	if msg, bad := s.clock.skewed(req); bad {
		return nil, nil, &validation.Error{Violations: []validation.Violation{{Field: "context.time", Message: msg}}}
	}
	d := s.decisions
	if cid := CorrelationID(ctx); cid != "" && req.GetContext().GetCorrelationId() == "" {
		if req.Context == nil {
			req.Context = &chaperonev1.Context{}
		}
		req.Context.CorrelationId = cid
	}
	resp, trace := d.engine.Explain(ctx, req)
	if d.recorder != nil {
		if err := d.recorder.Record(ctx, CallerName(ctx), req, resp); err != nil {
			resp = d.unaudited(ctx, resp, err)
		}
	}
	d.logDecision(ctx, req, resp)
	if s.metrics != nil {
		s.metrics.countDecision(resp)
	}
	return resp, trace, nil
}

// Validator is the validator the server checks requests with.
func (s *Server) Validator() *validation.Validator { return s.validator }
