package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// AgreementService is the AgreementService API over an [access.Agreements]
// store: the vendor agreement of each client app. A revoked or expired
// agreement is seen by the next Check (offboarding is immediate). Mount it
// with [WithAgreementService]. With [WithAgreementAudit], puts and
// revocations are put on the audit chain before they are made (see
// [ChangeRecorder]).
type AgreementService struct {
	agreements access.Agreements
	logger     *slog.Logger
	changes    ChangeRecorder
}

var _ chaperonev1connect.AgreementServiceHandler = (*AgreementService)(nil)

// AgreementOption configures an [AgreementService].
type AgreementOption func(*AgreementService)

// WithAgreementLogger sets the service's logger.
func WithAgreementLogger(l *slog.Logger) AgreementOption {
	return func(s *AgreementService) { s.logger = l }
}

// WithAgreementAudit records every put and revocation in r, before it is
// made; when r cannot store the record the RPC fails with unavailable.
func WithAgreementAudit(r ChangeRecorder) AgreementOption {
	return func(s *AgreementService) { s.changes = r }
}

// NewAgreementService returns an AgreementService storing into agreements.
func NewAgreementService(agreements access.Agreements, opts ...AgreementOption) *AgreementService {
	s := &AgreementService{agreements: agreements, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithAgreementService mounts svc on a [Server].
func WithAgreementService(svc *AgreementService) Option {
	return WithService(chaperonev1connect.AgreementServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		return chaperonev1connect.NewAgreementServiceHandler(svc, opts...)
	})
}

// Put implements [chaperonev1connect.AgreementServiceHandler].
func (s *AgreementService) Put(ctx context.Context, req *connect.Request[chaperonev1.AgreementServicePutRequest]) (*connect.Response[chaperonev1.AgreementServicePutResponse], error) {
	m := req.Msg.GetAgreement()
	a := access.Agreement{
		ClientID: m.GetClientId(), Vendor: m.GetVendor(), Tier: m.GetTier(), BAASigned: m.GetBaaSigned(),
		Purposes: m.GetPurposes(), ResourceTypes: m.GetResourceTypes(),
	}
	if m.GetBaaExpires() != nil {
		a.BAAExpires = m.GetBaaExpires().AsTime()
	}
	if err := a.Validate(); err != nil {
		return nil, accessError(ctx, s.logger, "put agreement", err)
	}
	c := audit.Change{Action: audit.ChangeAgreementPut, ClientID: a.ClientID, Vendor: a.Vendor, Tier: a.Tier,
		BAASigned: a.BAASigned, Purposes: a.Purposes, ResourceTypes: a.ResourceTypes}
	if !a.BAAExpires.IsZero() {
		t := a.BAAExpires.UTC()
		c.BAAExpires = &t
	}
	done, err := s.audit().begin(ctx, c)
	if err != nil {
		return nil, err
	}
	a, err = s.agreements.PutAgreement(ctx, a)
	if err != nil {
		err = accessError(ctx, s.logger, "put agreement", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{})
	s.logger.InfoContext(ctx, "agreement stored", "client_id", a.ClientID, "vendor", a.Vendor)
	return connect.NewResponse(&chaperonev1.AgreementServicePutResponse{Agreement: agreementMsg(a)}), nil
}

// Get implements [chaperonev1connect.AgreementServiceHandler].
func (s *AgreementService) Get(ctx context.Context, req *connect.Request[chaperonev1.AgreementServiceGetRequest]) (*connect.Response[chaperonev1.AgreementServiceGetResponse], error) {
	a, err := s.agreements.GetAgreement(ctx, req.Msg.GetClientId())
	if err != nil {
		return nil, accessError(ctx, s.logger, "get agreement", err)
	}
	return connect.NewResponse(&chaperonev1.AgreementServiceGetResponse{Agreement: agreementMsg(a)}), nil
}

// Revoke implements [chaperonev1connect.AgreementServiceHandler].
func (s *AgreementService) Revoke(ctx context.Context, req *connect.Request[chaperonev1.AgreementServiceRevokeRequest]) (*connect.Response[chaperonev1.AgreementServiceRevokeResponse], error) {
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeAgreementRevoke, ClientID: req.Msg.GetClientId()})
	if err != nil {
		return nil, err
	}
	a, err := s.agreements.RevokeAgreement(ctx, req.Msg.GetClientId())
	if err != nil {
		err = accessError(ctx, s.logger, "revoke agreement", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{})
	s.logger.InfoContext(ctx, "agreement revoked", "client_id", a.ClientID)
	return connect.NewResponse(&chaperonev1.AgreementServiceRevokeResponse{Agreement: agreementMsg(a)}), nil
}

func (s *AgreementService) audit() changeLog { return changeLog{rec: s.changes, logger: s.logger} }

func agreementMsg(a access.Agreement) *chaperonev1.Agreement {
	m := &chaperonev1.Agreement{
		ClientId: a.ClientID, Vendor: a.Vendor, Tier: a.Tier, BaaSigned: a.BAASigned,
		Purposes: a.Purposes, ResourceTypes: a.ResourceTypes, Revoked: a.Revoked,
	}
	if !a.BAAExpires.IsZero() {
		m.BaaExpires = timestamppb.New(a.BAAExpires)
	}
	if !a.UpdatedAt.IsZero() {
		m.UpdateTime = timestamppb.New(a.UpdatedAt)
	}
	return m
}
