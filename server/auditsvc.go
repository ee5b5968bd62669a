package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/callers"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// AuditSource reads the server's own decision log from its first record
// (audit.ReadFiles for a file log, audit.ReadStream for a Redis stream).
type AuditSource func(ctx context.Context) iter.Seq2[audit.Entry, error]

// AuditReviewer writes a review record on the chain and returns once it is
// stored; *audit.Log is one.
type AuditReviewer interface {
	Review(ctx context.Context, caller string, rv audit.Review) error
}

var _ AuditReviewer = (*audit.Log)(nil)

// AuditService is the AuditService API over the server's own decision log:
// it reads the log on every call (the records are identifiers, written by
// this server) and writes reviews through the log's writer, so a review
// joins the same chain, checkpoints and all. Mount it with
// [WithAuditService].
type AuditService struct {
	src      AuditSource
	reviewer AuditReviewer
	keys     []ed25519.PublicKey
	fields   *audit.FieldKeys
	pruned   func() ([]audit.PruneAnchor, error)
	logger   *slog.Logger
}

var _ chaperonev1connect.AuditServiceHandler = (*AuditService)(nil)

// AuditOption configures an [AuditService].
type AuditOption func(*AuditService)

// WithAuditKeys checks signatures and cadence when verifying: the public
// keys the log is signed with (the server's --audit-key).
func WithAuditKeys(keys ...ed25519.PublicKey) AuditOption {
	return func(s *AuditService) { s.keys = append(s.keys, keys...) }
}

// WithAuditFieldKeys opens the identifying fields the log's writer sealed
// (serve --audit-encryption-key-file); a patient's records are found by
// their blind index. Without it a log with sealed fields cannot be read.
func WithAuditFieldKeys(fk *audit.FieldKeys) AuditOption {
	return func(s *AuditService) { s.fields = fk }
}

// WithAuditPruned gives Verify the prune anchors of the log (a file log
// pruned by retention starts from one; see [audit.ReadPruneAnchors]).
func WithAuditPruned(read func() ([]audit.PruneAnchor, error)) AuditOption {
	return func(s *AuditService) { s.pruned = read }
}

// WithAuditLogger sets the service's logger.
func WithAuditLogger(l *slog.Logger) AuditOption { return func(s *AuditService) { s.logger = l } }

// NewAuditService returns an AuditService reading src and writing reviews
// to reviewer.
func NewAuditService(src AuditSource, reviewer AuditReviewer, opts ...AuditOption) *AuditService {
	s := &AuditService{src: src, reviewer: reviewer, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithAuditService mounts svc on a [Server].
func WithAuditService(svc *AuditService) Option {
	return WithService(chaperonev1connect.AuditServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		return chaperonev1connect.NewAuditServiceHandler(svc, opts...)
	})
}

// loggedRecord is a record with the line it was stored as.
type loggedRecord struct {
	audit.Record
	line []byte
}

// errAuditRead answers a log that could not be read.
var errAuditRead = errors.New("the audit log could not be read")

// scan reads the log and returns the lines that may match: for every
// group of needles, the line holds at least one of them. The needles are
// cheap, conservative tests on the stored JSON (see [AuditService.quoted]);
// the exact test runs on the decoded record. A torn last line (a write in
// progress, or cut by a crash) is left out.
func (s *AuditService) scan(ctx context.Context, groups ...[]string) ([][]byte, error) {
	var out [][]byte
	for e, err := range s.src(ctx) {
		if err != nil {
			s.logger.ErrorContext(ctx, "read audit log", "error", err)
			return nil, connect.NewError(connect.CodeUnavailable, errAuditRead)
		}
		if e.Torn || !holdsAll(e.Line, groups) {
			continue
		}
		out = append(out, e.Line)
	}
	return out, nil
}

func holdsAll(line []byte, groups [][]string) bool {
	for _, g := range groups {
		found := false
		for _, n := range g {
			if bytes.Contains(line, []byte(n)) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// decode reads a line's record and opens its sealed identifying fields.
func (s *AuditService) decode(ctx context.Context, line []byte) (loggedRecord, error) {
	var r audit.Record
	if err := json.Unmarshal(line, &r); err != nil {
		s.logger.ErrorContext(ctx, "decode audit record", "error", err)
		return loggedRecord{}, connect.NewError(connect.CodeDataLoss, errors.New("the audit log holds a line that is not a record (run chaperone audit verify)"))
	}
	var err error
	switch {
	case s.fields != nil:
		err = s.fields.Open(&r)
	case audit.HasSealedFields(&r):
		err = audit.ErrFieldKey
	}
	if err != nil {
		s.logger.ErrorContext(ctx, "open audit record", "seq", r.Seq, "error", err)
		return loggedRecord{}, connect.NewError(connect.CodeFailedPrecondition, errors.New("the audit log's identifying fields are encrypted under a key this server does not hold"))
	}
	return loggedRecord{Record: r, line: line}, nil
}

// records scans for the groups of needles and decodes what may match.
func (s *AuditService) records(ctx context.Context, groups ...[]string) ([]loggedRecord, error) {
	lines, err := s.scan(ctx, groups...)
	if err != nil {
		return nil, err
	}
	return s.decodeAll(ctx, lines)
}

// decodeAll decodes lines in order.
func (s *AuditService) decodeAll(ctx context.Context, lines [][]byte) ([]loggedRecord, error) {
	out := make([]loggedRecord, 0, len(lines))
	for _, l := range lines {
		r, err := s.decode(ctx, l)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// quoted are the needles of a value: its JSON string, and with sealed
// fields its blind indexes too (a sealed record holds those instead).
// Values are checked by the API's patterns to need no JSON escaping.
func (s *AuditService) quoted(v string, identifying bool) []string {
	out := []string{`"` + v + `"`}
	if identifying && s.fields != nil {
		for _, ix := range s.fields.Indexes(v) {
			out = append(out, `"`+ix+`"`)
		}
	}
	return out
}

// kind is the needle of a record kind.
func kind(k audit.Kind) []string { return []string{`"kind":"` + string(k) + `"`} }

// DefaultAuditSearchLimit is how many records Search returns unless asked.
const DefaultAuditSearchLimit = 100

// Search implements [chaperonev1connect.AuditServiceHandler].
func (s *AuditService) Search(ctx context.Context, req *connect.Request[chaperonev1.AuditServiceSearchRequest]) (*connect.Response[chaperonev1.AuditServiceSearchResponse], error) {
	m := req.Msg
	limit := int(m.GetLimit())
	if limit <= 0 {
		limit = DefaultAuditSearchLimit
	}
	resType, resID, _ := strings.Cut(m.GetResource(), "/")
	groups := [][]string{kind(audit.KindDecision)}
	if m.GetPatient() != "" {
		groups = append(groups, s.quoted(m.GetPatient(), true))
	}
	if m.GetSubject() != "" {
		groups = append(groups, s.quoted(m.GetSubject(), true))
	}
	if resType != "" {
		groups = append(groups, []string{`"type":"` + resType + `"`})
	}
	if resID != "" && s.fields == nil {
		groups = append(groups, s.quoted(resID, false))
	}
	if m.GetDecision() != "" {
		groups = append(groups, []string{`"decision":"` + m.GetDecision() + `"`})
	}
	if m.GetReason() != "" {
		groups = append(groups, s.quoted(m.GetReason(), false))
	}
	lines, err := s.scan(ctx, groups...)
	if err != nil {
		return nil, err
	}
	w := window(m.GetSince(), m.GetUntil())
	resp := &chaperonev1.AuditServiceSearchResponse{}
	// Newest first: decode from the end, only as far as needed.
	for i := len(lines) - 1; i >= 0; i-- {
		r, err := s.decode(ctx, lines[i])
		if err != nil {
			return nil, err
		}
		if r.Kind != audit.KindDecision || !w.Contains(r.Time) {
			continue
		}
		if m.GetDecision() != "" && r.Decision != m.GetDecision() {
			continue
		}
		if m.GetPatient() != "" && (r.Resource == nil || r.Resource.Patient != m.GetPatient()) {
			continue
		}
		if m.GetSubject() != "" && (r.Subject == nil || r.Subject.ID != m.GetSubject()) {
			continue
		}
		if resType != "" && (r.Resource == nil || r.Resource.Type != resType || (resID != "" && r.Resource.ID != resID)) {
			continue
		}
		if m.GetReason() != "" && !slices.ContainsFunc(r.Reasons, func(x audit.Reason) bool {
			return x.Code == m.GetReason() || x.PolicyID == m.GetReason()
		}) {
			continue
		}
		if len(resp.Records) == limit {
			resp.Truncated = true
			break
		}
		resp.Records = append(resp.Records, recordMsg(&r))
	}
	return connect.NewResponse(resp), nil
}

// GetRecord implements [chaperonev1connect.AuditServiceHandler].
func (s *AuditService) GetRecord(ctx context.Context, req *connect.Request[chaperonev1.AuditServiceGetRecordRequest]) (*connect.Response[chaperonev1.AuditServiceGetRecordResponse], error) {
	id := req.Msg.GetDecisionId()
	recs, err := s.records(ctx, s.quoted(id, false))
	if err != nil {
		return nil, err
	}
	resp := &chaperonev1.AuditServiceGetRecordResponse{}
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Kind == audit.KindDecision && r.DecisionID == id && resp.Record == nil:
			resp.Record = recordMsg(r)
		case r.Kind == audit.KindReview && r.Review != nil && r.Review.DecisionID == id:
			resp.Reviews = append(resp.Reviews, reviewMsg(r))
		}
	}
	if resp.Record == nil {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("decision_id: no such decision in the audit log"))
	}
	return connect.NewResponse(resp), nil
}

// Verify implements [chaperonev1connect.AuditServiceHandler].
func (s *AuditService) Verify(ctx context.Context, _ *connect.Request[chaperonev1.AuditServiceVerifyRequest]) (*connect.Response[chaperonev1.AuditServiceVerifyResponse], error) {
	resp := &chaperonev1.AuditServiceVerifyResponse{Signed: len(s.keys) > 0}
	// The latest checkpoint, found on the way.
	var last *audit.Record
	entries := func(yield func(audit.Entry, error) bool) {
		for e, err := range s.src(ctx) {
			if err == nil && !e.Torn && strings.Contains(string(e.Line), `"kind":"checkpoint"`) {
				var r audit.Record
				if json.Unmarshal(e.Line, &r) == nil && r.Kind == audit.KindCheckpoint {
					last = &r
				}
			}
			if !yield(e, err) {
				return
			}
		}
	}
	vo := audit.VerifyOptions{Keys: s.keys, AllowOpenTail: true}
	if s.pruned != nil {
		var perr error
		if vo.Pruned, perr = s.pruned(); perr != nil {
			s.logger.ErrorContext(ctx, "read audit prune anchors", "error", perr)
			return nil, connect.NewError(connect.CodeUnavailable, errAuditRead)
		}
	}
	sum, err := audit.VerifyWith(entries, vo)
	var te *audit.TamperError
	switch {
	case errors.As(err, &te):
		resp.Error = te.Error()
	case err != nil:
		s.logger.ErrorContext(ctx, "verify audit log", "error", err)
		return nil, connect.NewError(connect.CodeUnavailable, errAuditRead)
	default:
		resp.Intact = true
	}
	resp.Records, resp.Decisions, resp.Reviews = sum.Records, sum.Decisions, sum.Reviews
	resp.HeadSeq, resp.HeadHash, resp.UnsignedTail = sum.Head.Seq, sum.Head.Hash, sum.UnsignedTail
	if last != nil {
		resp.CheckpointSeq = last.Seq
		resp.CheckpointTime = timestamppb.New(last.Time)
	}
	return connect.NewResponse(resp), nil
}

// ListBreakGlass implements [chaperonev1connect.AuditServiceHandler].
func (s *AuditService) ListBreakGlass(ctx context.Context, req *connect.Request[chaperonev1.AuditServiceListBreakGlassRequest]) (*connect.Response[chaperonev1.AuditServiceListBreakGlassResponse], error) {
	recs, err := s.records(ctx, []string{`"breakGlassReason"`, `"ETREAT"`, `"` + audit.BreakGlassTag + `"`, kind(audit.KindReview)[0]})
	if err != nil {
		return nil, err
	}
	reviews := map[string][]*chaperonev1.AuditReview{}
	for i := range recs {
		if r := &recs[i]; r.Kind == audit.KindReview && r.Review != nil {
			reviews[r.Review.DecisionID] = append(reviews[r.Review.DecisionID], reviewMsg(r))
		}
	}
	w := window(req.Msg.GetSince(), req.Msg.GetUntil())
	resp := &chaperonev1.AuditServiceListBreakGlassResponse{}
	for i := len(recs) - 1; i >= 0; i-- {
		r := &recs[i]
		if !r.IsBreakGlass() || !w.Contains(r.Time) {
			continue
		}
		rv := reviews[r.DecisionID]
		if req.Msg.GetUnreviewed() && len(rv) > 0 {
			continue
		}
		resp.Accesses = append(resp.Accesses, &chaperonev1.BreakGlassAccess{Record: recordMsg(r), Reviews: rv})
	}
	return connect.NewResponse(resp), nil
}

// Review implements [chaperonev1connect.AuditServiceHandler]. The reviewer
// is the authenticated caller; the decision must be in the log.
func (s *AuditService) Review(ctx context.Context, req *connect.Request[chaperonev1.AuditServiceReviewRequest]) (*connect.Response[chaperonev1.AuditServiceReviewResponse], error) {
	if s.reviewer == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("reviews are not recorded by this server"))
	}
	id := req.Msg.GetDecisionId()
	recs, err := s.records(ctx, kind(audit.KindDecision), s.quoted(id, false))
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(recs, func(r loggedRecord) bool { return r.Kind == audit.KindDecision && r.DecisionID == id }) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("decision_id: no such decision in the audit log"))
	}
	caller := CallerName(ctx)
	rv := audit.Review{DecisionID: id, By: caller, Note: req.Msg.GetNote()}
	if err := s.reviewer.Review(ctx, caller, rv); err != nil {
		s.logger.ErrorContext(ctx, "record review", "decision_id", id, "error", err)
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("audit unavailable: the review was not recorded"))
	}
	// No note in the log line: it may carry PHI.
	s.logger.InfoContext(ctx, "decision reviewed", "decision_id", id, "by", caller)
	return connect.NewResponse(&chaperonev1.AuditServiceReviewResponse{Review: &chaperonev1.AuditReview{By: caller, Note: rv.Note, Caller: caller}}), nil
}

// Disclosures implements [chaperonev1connect.AuditServiceHandler].
func (s *AuditService) Disclosures(ctx context.Context, req *connect.Request[chaperonev1.AuditServiceDisclosuresRequest]) (*connect.Response[chaperonev1.AuditServiceDisclosuresResponse], error) {
	m := req.Msg
	recs, err := s.records(ctx, kind(audit.KindDecision), []string{`"decision":"ALLOW"`}, s.quoted(m.GetPatient(), true))
	if err != nil {
		return nil, err
	}
	w := window(m.GetSince(), m.GetUntil())
	resp := &chaperonev1.AuditServiceDisclosuresResponse{}
	for i := range recs {
		r := &recs[i]
		if r.Kind != audit.KindDecision || r.Decision != "ALLOW" || r.Resource == nil || r.Resource.Patient != m.GetPatient() || !w.Contains(r.Time) {
			continue
		}
		if !m.GetIncludeTpo() && audit.IsTPO(r.PurposeOfUse) {
			continue
		}
		resp.Disclosures = append(resp.Disclosures, recordMsg(r))
	}
	slices.SortStableFunc(resp.Disclosures, func(a, b *chaperonev1.AuditRecord) int {
		return cmp.Compare(a.GetSeq(), b.GetSeq())
	})
	return connect.NewResponse(resp), nil
}

func window(since, until *timestamppb.Timestamp) audit.Window {
	var w audit.Window
	if since != nil {
		w.Since = since.AsTime()
	}
	if until != nil {
		w.Until = until.AsTime()
	}
	return w
}

func recordMsg(r *loggedRecord) *chaperonev1.AuditRecord {
	m := &chaperonev1.AuditRecord{
		Seq: r.Seq, Time: timestamppb.New(r.Time), Caller: r.Caller, DecisionId: r.DecisionID,
		Action: r.Action, PurposeOfUse: r.PurposeOfUse, Decision: r.Decision,
		BundleRevision: r.BundleRevision, Json: string(r.line),
	}
	if sub := r.Subject; sub != nil {
		m.Subject, m.Roles = sub.ID, sub.Roles
	}
	if res := r.Resource; res != nil {
		m.ResourceType, m.ResourceId, m.Patient = res.Type, res.ID, res.Patient
	}
	for _, x := range r.Reasons {
		if x.PolicyID != "" {
			m.Reasons = append(m.Reasons, x.Code+":"+x.PolicyID)
		} else {
			m.Reasons = append(m.Reasons, x.Code)
		}
	}
	if r.Obligations != nil {
		m.AuditTags = r.Obligations.AuditTags
	}
	if r.Context != nil {
		m.BreakGlassReason = r.Context.BreakGlassReason
	}
	return m
}

func reviewMsg(r *loggedRecord) *chaperonev1.AuditReview {
	return &chaperonev1.AuditReview{Seq: r.Seq, Time: timestamppb.New(r.Time), By: r.Review.By, Note: r.Review.Note, Caller: r.Caller}
}

// Authorize reports whether the caller of ctx, as the [Guard] established
// it, may call procedure ("/chaperone.v1.AuditService/Search") under the
// same rules the guard applies to RPCs (--callers). It is for handlers
// that serve several procedures' worth of data on one route (the web
// console): nil, or an error matching callers.ErrPermissionDenied, or
// callers.ErrUnauthenticated when ctx has no caller.
func Authorize(ctx context.Context, procedure string) error {
	ri := requestInfoFrom(ctx)
	if ri == nil || ri.caller == nil || ri.guard == nil {
		return errNoCaller
	}
	return ri.guard.authz.Authorize(ri.caller, procedure)
}

// errNoCaller is a request the guard did not see.
var errNoCaller = fmt.Errorf("%w: no authenticated caller", callers.ErrUnauthenticated)
