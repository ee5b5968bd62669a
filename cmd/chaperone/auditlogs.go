package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
)

// auditLogs is the decision log serve keeps: the --audit-file log, or the
// --audit-redis stream, or with both flags both, each its own hash chain.
// A record is kept only when every log kept it: otherwise the decision is
// DENY AUDIT_UNAVAILABLE and the change refused, as with one log. The first
// log is the primary: its counters are the metrics, and only it writes to
// --audit-anchor.
type auditLogs []*audit.Log

var (
	_ server.Recorder       = auditLogs(nil)
	_ server.BatchRecorder  = auditLogs(nil)
	_ server.ChangeRecorder = auditLogs(nil)
)

func (ls auditLogs) Record(ctx context.Context, caller string, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Record(ctx, caller, req, resp))
	}
	return errors.Join(errs...)
}

func (ls auditLogs) RecordAll(ctx context.Context, caller string, reqs []*chaperonev1.CheckRequest, resps []*chaperonev1.CheckResponse) []error {
	var out []error
	for _, l := range ls {
		errs := l.RecordAll(ctx, caller, reqs, resps)
		if errs == nil {
			continue
		}
		if out == nil {
			out = make([]error, len(reqs))
		}
		for i, err := range errs {
			out[i] = errors.Join(out[i], err)
		}
	}
	return out
}

func (ls auditLogs) Change(ctx context.Context, caller string, c audit.Change) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Change(ctx, caller, c))
	}
	return errors.Join(errs...)
}

func (ls auditLogs) ChangeOutcome(ctx context.Context, caller string, c audit.Change) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.ChangeOutcome(ctx, caller, c))
	}
	return errors.Join(errs...)
}

// Review writes a review record on every log.
func (ls auditLogs) Review(ctx context.Context, caller string, rv audit.Review) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Review(ctx, caller, rv))
	}
	return errors.Join(errs...)
}

// Healthy is nil while every log keeps records.
func (ls auditLogs) Healthy() error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Healthy())
	}
	return errors.Join(errs...)
}

// Stats are the primary log's counters; Halted is set when any log halted.
func (ls auditLogs) Stats() audit.Stats {
	st := ls[0].Stats()
	for _, l := range ls[1:] {
		st.Halted = st.Halted || l.Stats().Halted
	}
	return st
}

// Close drains and closes every log.
func (ls auditLogs) Close(ctx context.Context) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Close(ctx))
	}
	return errors.Join(errs...)
}

// openLogs opens the decision logs the flags ask for: with both
// --audit-file (given explicitly) and --audit-redis, the file and the
// stream; otherwise the one f.open picks.
func (f *auditFlags) openLogs(ctx context.Context, logger *slog.Logger, fileGiven bool) (auditLogs, error) {
	if f.redisURL == "" || !fileGiven {
		l, err := f.open(ctx, logger)
		if err != nil {
			return nil, err
		}
		return auditLogs{l}, nil
	}
	fileOnly := *f
	fileOnly.redisURL = ""
	fl, err := fileOnly.open(ctx, logger)
	if err != nil {
		return nil, err
	}
	streamOnly := *f
	streamOnly.anchor = "" // the anchor follows the primary (file) log
	sl, err := streamOnly.open(ctx, logger)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return nil, errors.Join(err, fl.Close(cctx))
	}
	return auditLogs{fl, sl}, nil
}
