package server

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/audit"
)

// ChangeRecorder puts administrative changes (consents, break-glass
// grants, vendor agreements) on the audit chain; [*audit.Log] is one.
//
// Change must return only once the record is stored (an error means it is
// not, and the change is then refused with unavailable: nothing is
// applied and nothing is claimed). ChangeOutcome records the outcome of a
// change recorded before; it may queue it and return. Neither keeps c
// after it returns, apart from its own copy.
type ChangeRecorder interface {
	Change(ctx context.Context, caller string, c audit.Change) error
	ChangeOutcome(ctx context.Context, caller string, c audit.Change) error
}

var _ ChangeRecorder = (*audit.Log)(nil)

// CallerName is how audit records name the caller of the request ctx
// belongs to: the token subject or mutual TLS identity the [Guard]
// authenticated, [audit.CallerAnonymousLoopback] when no caller
// authentication is configured, and [audit.CallerUnauthenticated] for a
// request that did not pass a Guard.
func CallerName(ctx context.Context) string {
	c, ok := CallerFromContext(ctx)
	switch {
	case !ok || c == nil:
		return audit.CallerUnauthenticated
	case c.Anonymous:
		return audit.CallerAnonymousLoopback
	default:
		return c.ID
	}
}

// errAuditUnavailable answers a change whose record could not be stored.
var errAuditUnavailable = errors.New("audit unavailable: the change was not made")

// changeLog records the changes of one service; a nil recorder records
// nothing.
type changeLog struct {
	rec    ChangeRecorder
	logger *slog.Logger
}

// begin records c, made by the caller of ctx, before it is applied. It
// returns the function that records the outcome: call it with the error
// the RPC answers (nil when applied) and what the store assigned. An
// error from begin is the RPC's answer: the change must not be made.
func (l changeLog) begin(ctx context.Context, c audit.Change) (func(err error, result audit.Change), error) {
	if l.rec == nil {
		return func(error, audit.Change) {}, nil
	}
	caller := CallerName(ctx)
	c.ID, c.CorrelationID = audit.NewChangeID(), CorrelationID(ctx)
	if err := l.rec.Change(ctx, caller, c); err != nil {
		l.logger.LogAttrs(ctx, slog.LevelError, "audit record of a change not stored; change refused",
			slog.String("action", string(c.Action)), slog.String("caller", caller), slog.String("error", err.Error()))
		// The record may still be stored later (it timed out in the
		// queue): its outcome says the change was not made.
		_ = l.rec.ChangeOutcome(context.WithoutCancel(ctx), caller, audit.Change{ID: c.ID, Action: c.Action,
			Outcome: audit.OutcomeFailed, Error: connect.CodeUnavailable.String()})
		return nil, connect.NewError(connect.CodeUnavailable, errAuditUnavailable)
	}
	return func(err error, result audit.Change) {
		result.ID, result.Action, result.Outcome = c.ID, c.Action, audit.OutcomeApplied
		if err != nil {
			result.Outcome, result.Error = audit.OutcomeFailed, connect.CodeOf(err).String()
		}
		// The change is made (or failed) whatever becomes of this record:
		// its absence reads as "outcome unknown".
		if err := l.rec.ChangeOutcome(context.WithoutCancel(ctx), caller, result); err != nil {
			l.logger.LogAttrs(ctx, slog.LevelError, "audit record of a change's outcome not stored",
				slog.String("action", string(c.Action)), slog.String("change_id", c.ID), slog.String("error", err.Error()))
		}
	}, nil
}
