package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// AgreementService is the AgreementService API over an [access.Agreements]
// store: the vendor agreement of each client app. A revoked or expired
// agreement is seen by the next Check (offboarding is immediate). Mount it
// with [WithAgreementService].
type AgreementService struct {
	agreements access.Agreements
	logger     *slog.Logger
}

var _ chaperonev1connect.AgreementServiceHandler = (*AgreementService)(nil)

// AgreementOption configures an [AgreementService].
type AgreementOption func(*AgreementService)

// WithAgreementLogger sets the service's logger.
func WithAgreementLogger(l *slog.Logger) AgreementOption {
	return func(s *AgreementService) { s.logger = l }
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
	a, err := s.agreements.PutAgreement(ctx, a)
	if err != nil {
		return nil, accessError(ctx, s.logger, "put agreement", err)
	}
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
	a, err := s.agreements.RevokeAgreement(ctx, req.Msg.GetClientId())
	if err != nil {
		return nil, accessError(ctx, s.logger, "revoke agreement", err)
	}
	s.logger.InfoContext(ctx, "agreement revoked", "client_id", a.ClientID)
	return connect.NewResponse(&chaperonev1.AgreementServiceRevokeResponse{Agreement: agreementMsg(a)}), nil
}

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
