package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// AccessService is the AccessService API over an [access.Grants] store:
// GrantBreakGlass records an emergency access (reason of at least 20
// non-space characters, ttl default 4h, at most 24h), RevokeBreakGlass ends
// it, ListBreakGlass lists the grants of a subject or patient. Mount it
// with [WithAccessService].
//
// A grant's grantedBy is the authenticated caller ([CallerName]); the
// request's granted_by field is accepted for compatibility and ignored.
// With [WithAccessAudit], grants and revocations are put on the audit
// chain before they are made (see [ChangeRecorder]).
type AccessService struct {
	grants      access.Grants
	revocations access.Revocations
	logger      *slog.Logger
	now         func() time.Time
	changes     ChangeRecorder
}

var _ chaperonev1connect.AccessServiceHandler = (*AccessService)(nil)

// AccessOption configures an [AccessService].
type AccessOption func(*AccessService)

// WithAccessLogger sets the service's logger.
func WithAccessLogger(l *slog.Logger) AccessOption { return func(s *AccessService) { s.logger = l } }

// WithAccessAudit records every grant and revocation in r, before it is
// made; when r cannot store the record the RPC fails with unavailable.
func WithAccessAudit(r ChangeRecorder) AccessOption { return func(s *AccessService) { s.changes = r } }

// WithRevocations serves RevokeToken on list, the token revocation list
// the servers' token verifiers read; without it RevokeToken is
// unimplemented.
func WithRevocations(list access.Revocations) AccessOption {
	return func(s *AccessService) { s.revocations = list }
}

// WithAccessClock sets the clock of grant and revocation times (tests).
func WithAccessClock(now func() time.Time) AccessOption {
	return func(s *AccessService) {
		if now != nil {
			s.now = now
		}
	}
}

// NewAccessService returns an AccessService storing into grants.
func NewAccessService(grants access.Grants, opts ...AccessOption) *AccessService {
	s := &AccessService{grants: grants, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithAccessService mounts svc on a [Server].
func WithAccessService(svc *AccessService) Option {
	return WithService(chaperonev1connect.AccessServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		return chaperonev1connect.NewAccessServiceHandler(svc, opts...)
	})
}

// GrantBreakGlass implements [chaperonev1connect.AccessServiceHandler].
func (s *AccessService) GrantBreakGlass(ctx context.Context, req *connect.Request[chaperonev1.AccessServiceGrantBreakGlassRequest]) (*connect.Response[chaperonev1.AccessServiceGrantBreakGlassResponse], error) {
	m := req.Msg
	var ttl time.Duration
	if m.GetTtl() != nil {
		ttl = m.GetTtl().AsDuration()
	}
	// grantedBy is who is authenticated, never what the request says.
	g, err := access.NewGrant(m.GetSubject(), m.GetPatient(), m.GetReason(), CallerName(ctx), ttl, s.now())
	if err != nil {
		return nil, accessError(ctx, s.logger, "grant break-glass", err)
	}
	g.ID = access.NewID()
	expires := g.ExpiresAt.UTC()
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeGrant, GrantID: g.ID,
		Subject: g.Subject, Patient: g.Patient, Reason: g.Reason, Expires: &expires})
	if err != nil {
		return nil, err
	}
	g, err = s.grants.PutGrant(ctx, g)
	if err != nil {
		err = accessError(ctx, s.logger, "grant break-glass", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{GrantID: g.ID})
	// The audit trail of who opened which record is the decision log; this
	// line records the grant itself (no reason text: it may carry PHI).
	s.logger.InfoContext(ctx, "break-glass granted", "id", g.ID, "subject", g.Subject, "expires", g.ExpiresAt)
	return connect.NewResponse(&chaperonev1.AccessServiceGrantBreakGlassResponse{Grant: grantMsg(g)}), nil
}

// RevokeBreakGlass implements [chaperonev1connect.AccessServiceHandler].
func (s *AccessService) RevokeBreakGlass(ctx context.Context, req *connect.Request[chaperonev1.AccessServiceRevokeBreakGlassRequest]) (*connect.Response[chaperonev1.AccessServiceRevokeBreakGlassResponse], error) {
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeGrantRevoke, GrantID: req.Msg.GetId()})
	if err != nil {
		return nil, err
	}
	g, err := s.grants.RevokeGrant(ctx, req.Msg.GetId())
	if err != nil {
		err = accessError(ctx, s.logger, "revoke break-glass", err)
		done(err, audit.Change{})
		return nil, err
	}
	expires := g.ExpiresAt.UTC()
	done(nil, audit.Change{Subject: g.Subject, Patient: g.Patient, Expires: &expires})
	s.logger.InfoContext(ctx, "break-glass revoked", "id", g.ID)
	return connect.NewResponse(&chaperonev1.AccessServiceRevokeBreakGlassResponse{Grant: grantMsg(g)}), nil
}

// ListBreakGlass implements [chaperonev1connect.AccessServiceHandler].
func (s *AccessService) ListBreakGlass(ctx context.Context, req *connect.Request[chaperonev1.AccessServiceListBreakGlassRequest]) (*connect.Response[chaperonev1.AccessServiceListBreakGlassResponse], error) {
	gs, err := s.grants.ListGrants(ctx, req.Msg.GetSubject(), req.Msg.GetPatient())
	if err != nil {
		return nil, accessError(ctx, s.logger, "list break-glass", err)
	}
	resp := &chaperonev1.AccessServiceListBreakGlassResponse{}
	for _, g := range gs {
		resp.Grants = append(resp.Grants, grantMsg(g))
	}
	return connect.NewResponse(resp), nil
}

// RevokeToken implements [chaperonev1connect.AccessServiceHandler]: the
// revocation is recorded on the audit chain (action token.revoke, with the
// revoking caller) before it is stored.
func (s *AccessService) RevokeToken(ctx context.Context, req *connect.Request[chaperonev1.AccessServiceRevokeTokenRequest]) (*connect.Response[chaperonev1.AccessServiceRevokeTokenResponse], error) {
	if s.revocations == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("no token revocation list is configured"))
	}
	m := req.Msg
	var until time.Time
	if m.GetUntil() != nil {
		until = m.GetUntil().AsTime()
	}
	rv, err := access.NewRevocation(m.GetJti(), m.GetTokenSha256(), until, CallerName(ctx), s.now())
	if err != nil {
		return nil, accessError(ctx, s.logger, "revoke token", err)
	}
	u := rv.Until
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeTokenRevoke, JTI: rv.JTI, TokenSHA256: rv.TokenSHA256, Expires: &u})
	if err != nil {
		return nil, err
	}
	rv, err = s.revocations.RevokeToken(ctx, rv)
	if err != nil {
		err = accessError(ctx, s.logger, "revoke token", err)
		done(err, audit.Change{})
		return nil, err
	}
	u = rv.Until.UTC()
	done(nil, audit.Change{JTI: rv.JTI, TokenSHA256: rv.TokenSHA256, Expires: &u})
	s.logger.InfoContext(ctx, "token revoked", "jti", rv.JTI, "token_sha256", rv.TokenSHA256, "until", rv.Until, "by", rv.RevokedBy)
	return connect.NewResponse(&chaperonev1.AccessServiceRevokeTokenResponse{Revocation: &chaperonev1.TokenRevocation{
		Jti: rv.JTI, TokenSha256: rv.TokenSHA256, Until: timestamppb.New(rv.Until), RevokedBy: rv.RevokedBy, RevokeTime: timestamppb.New(rv.RevokedAt),
	}}), nil
}

func (s *AccessService) audit() changeLog { return changeLog{rec: s.changes, logger: s.logger} }

func grantMsg(g access.Grant) *chaperonev1.BreakGlassGrant {
	return &chaperonev1.BreakGlassGrant{
		Id: g.ID, Subject: g.Subject, Patient: g.Patient, Reason: g.Reason, GrantedBy: g.GrantedBy,
		CreateTime: timestamppb.New(g.CreatedAt), ExpireTime: timestamppb.New(g.ExpiresAt), Revoked: g.Revoked,
	}
}

// accessError translates an error of the access stores to a Connect error.
func accessError(ctx context.Context, logger *slog.Logger, op string, err error) error {
	var inv *access.InvalidError
	switch {
	case errors.As(err, &inv):
		return connect.NewError(connect.CodeInvalidArgument, errors.New(inv.Error()))
	case errors.Is(err, access.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("not found"))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	}
	logger.ErrorContext(ctx, op, "error", err)
	return connect.NewError(connect.CodeUnavailable, errors.New("access store unavailable"))
}
