package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// ConsentService is the ConsentService API over a [consentstore.Store]:
// Put parses and stores FHIR Consent resources (R4 or R5), Get, List and
// Revoke read and revoke them. Mount it with [WithConsentService].
//
// With [WithConsentAudit], puts and revocations are put on the audit chain
// before they are made (see [ChangeRecorder]).
type ConsentService struct {
	store    consentstore.Store
	logger   *slog.Logger
	changes  ChangeRecorder
	maxBytes int
}

var _ chaperonev1connect.ConsentServiceHandler = (*ConsentService)(nil)

// ConsentOption configures a [ConsentService].
type ConsentOption func(*ConsentService)

// WithConsentLogger sets the service's logger.
func WithConsentLogger(l *slog.Logger) ConsentOption {
	return func(s *ConsentService) { s.logger = l }
}

// WithConsentAudit records every put and revocation in r, before it is
// made; when r cannot store the record the RPC fails with unavailable.
func WithConsentAudit(r ChangeRecorder) ConsentOption {
	return func(s *ConsentService) { s.changes = r }
}

// WithConsentMaxBytes refuses a consent whose JSON is longer than n bytes
// with resource_exhausted before it is parsed (default
// [consentstore.DefaultMaxBytes]; the store holds its own limit too). A
// negative n turns the check off.
func WithConsentMaxBytes(n int) ConsentOption {
	return func(s *ConsentService) {
		if n != 0 {
			s.maxBytes = n
		}
	}
}

// NewConsentService returns a ConsentService storing into store.
func NewConsentService(store consentstore.Store, opts ...ConsentOption) *ConsentService {
	s := &ConsentService{store: store, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), maxBytes: consentstore.DefaultMaxBytes}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithConsentService mounts svc on a [Server]. A request message larger
// than twice the consent byte limit (plus 64 KiB) is refused with
// resource_exhausted before it is decoded (the exact limit applies to the
// consent's JSON once decoded).
func WithConsentService(svc *ConsentService) Option {
	return WithService(chaperonev1connect.ConsentServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		if svc.maxBytes > 0 {
			opts = append(opts, connect.WithReadMaxBytes(svc.readMaxBytes()))
		}
		return chaperonev1connect.NewConsentServiceHandler(svc, opts...)
	})
}

// readMaxBytes bounds a ConsentService request message on the wire: the
// consent's JSON may be encoded as protobuf Struct or JSON, a little larger
// than the JSON the limit counts.
func (s *ConsentService) readMaxBytes() int { return 2*s.maxBytes + 64<<10 }

// Put implements [chaperonev1connect.ConsentServiceHandler]. A consent
// longer than the byte limit is refused before it is parsed; the store
// refuses the rest (see [consentstore.Store.Put]): bad id or future date
// invalid_argument, an id of another patient failed_precondition, a stale
// ifVersion aborted, a limit resource_exhausted.
func (s *ConsentService) Put(ctx context.Context, req *connect.Request[chaperonev1.ConsentServicePutRequest]) (*connect.Response[chaperonev1.ConsentServicePutResponse], error) {
	if req.Msg.GetConsent() == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("consent: required"))
	}
	if s.maxBytes > 0 && proto.Size(req.Msg.GetConsent()) > s.readMaxBytes() {
		// Not worth encoding: far beyond the limit (a handler mounted
		// without WithConsentService has no read limit).
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("consent: larger than %d bytes", s.maxBytes))
	}
	data, err := protojson.Marshal(req.Msg.GetConsent())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("consent: not a JSON object"))
	}
	if s.maxBytes > 0 && len(data) > s.maxBytes {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("consent: %d bytes of JSON, at most %d", len(data), s.maxBytes))
	}
	c, err := fhirconsent.Parse(data)
	if err != nil {
		var pe *fhirconsent.ParseError
		if errors.As(err, &pe) {
			path := "consent"
			if pe.Path != "" {
				path += "." + pe.Path
			}
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New(path+": "+pe.Msg))
		}
		return nil, s.internal(ctx, "parse consent", err)
	}
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeConsentPut, ConsentID: c.ID,
		Patient: c.Patient, Status: c.Status, FHIRVersion: c.FHIRVersion})
	if err != nil {
		return nil, err
	}
	rec, err := s.store.Put(ctx, c, consentstore.IfVersion(req.Msg.GetIfVersion()))
	if err != nil {
		err = s.storeError(ctx, "put consent", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{ConsentID: rec.Consent.ID, Version: rec.Version})
	s.logger.InfoContext(ctx, "consent stored", "id", rec.Consent.ID, "version", rec.Version, "fhir_version", rec.Consent.FHIRVersion)
	return connect.NewResponse(&chaperonev1.ConsentServicePutResponse{Id: rec.Consent.ID, Version: rec.Version}), nil
}

// Get implements [chaperonev1connect.ConsentServiceHandler].
func (s *ConsentService) Get(ctx context.Context, req *connect.Request[chaperonev1.ConsentServiceGetRequest]) (*connect.Response[chaperonev1.ConsentServiceGetResponse], error) {
	if req.Msg.GetId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("id: required"))
	}
	rec, err := s.store.Get(ctx, req.Msg.GetId())
	if err != nil {
		return nil, s.storeError(ctx, "get consent", err)
	}
	sc, err := s.stored(rec)
	if err != nil {
		return nil, s.internal(ctx, "render consent", err)
	}
	return connect.NewResponse(&chaperonev1.ConsentServiceGetResponse{Consent: sc}), nil
}

// List implements [chaperonev1connect.ConsentServiceHandler].
func (s *ConsentService) List(ctx context.Context, req *connect.Request[chaperonev1.ConsentServiceListRequest]) (*connect.Response[chaperonev1.ConsentServiceListResponse], error) {
	if req.Msg.GetPatient() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("patient: required"))
	}
	recs, version, err := s.store.List(ctx, req.Msg.GetPatient())
	if err != nil {
		return nil, s.storeError(ctx, "list consents", err)
	}
	resp := &chaperonev1.ConsentServiceListResponse{Version: version}
	for _, rec := range recs {
		sc, err := s.stored(rec)
		if err != nil {
			return nil, s.internal(ctx, "render consent", err)
		}
		resp.Consents = append(resp.Consents, sc)
	}
	return connect.NewResponse(resp), nil
}

// Revoke implements [chaperonev1connect.ConsentServiceHandler].
func (s *ConsentService) Revoke(ctx context.Context, req *connect.Request[chaperonev1.ConsentServiceRevokeRequest]) (*connect.Response[chaperonev1.ConsentServiceRevokeResponse], error) {
	if req.Msg.GetId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("id: required"))
	}
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeConsentRevoke, ConsentID: req.Msg.GetId()})
	if err != nil {
		return nil, err
	}
	rec, err := s.store.Revoke(ctx, req.Msg.GetId())
	if err != nil {
		err = s.storeError(ctx, "revoke consent", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{Patient: rec.Consent.Patient, Version: rec.Version, Status: rec.Consent.Status})
	s.logger.InfoContext(ctx, "consent revoked", "id", rec.Consent.ID, "version", rec.Version)
	return connect.NewResponse(&chaperonev1.ConsentServiceRevokeResponse{Id: rec.Consent.ID, Version: rec.Version}), nil
}

func (s *ConsentService) audit() changeLog { return changeLog{rec: s.changes, logger: s.logger} }

func (s *ConsentService) stored(rec consentstore.Record) (*chaperonev1.StoredConsent, error) {
	st := &structpb.Struct{}
	if err := protojson.Unmarshal(rec.Consent.Raw, st); err != nil {
		return nil, err
	}
	return &chaperonev1.StoredConsent{
		Id:          rec.Consent.ID,
		Version:     rec.Version,
		Patient:     rec.Consent.Patient,
		FhirVersion: rec.Consent.FHIRVersion,
		Status:      rec.Consent.Status,
		Revoked:     rec.Revoked,
		Consent:     st,
	}, nil
}

// storeError translates a store error to a Connect error.
func (s *ConsentService) storeError(ctx context.Context, op string, err error) error {
	var invalid *consentstore.InvalidError
	switch {
	case errors.Is(err, consentstore.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("consent not found"))
	case errors.As(err, &invalid):
		return connect.NewError(connect.CodeInvalidArgument, errors.New("consent."+invalid.Path+": "+invalid.Msg))
	case errors.Is(err, consentstore.ErrOtherPatient):
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("consent.id: the id belongs to another patient's consent; a consent cannot move to another patient"))
	case errors.Is(err, consentstore.ErrVersionMismatch):
		return connect.NewError(connect.CodeAborted, errors.New("ifVersion: the stored consent has another version, or there is none; read it again"))
	case errors.Is(err, consentstore.ErrLimit):
		return connect.NewError(connect.CodeResourceExhausted, errors.New(limitMessage(err)))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	}
	s.logger.ErrorContext(ctx, op, "error", err)
	return connect.NewError(connect.CodeUnavailable, errors.New("consent store unavailable"))
}

// limitMessage is the store's limit error from its ErrLimit on: the
// bound that was exceeded, without the consent id.
func limitMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, consentstore.ErrLimit.Error()); i >= 0 {
		return msg[i:]
	}
	return consentstore.ErrLimit.Error()
}

func (s *ConsentService) internal(ctx context.Context, op string, err error) error {
	s.logger.ErrorContext(ctx, op, "error", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}
