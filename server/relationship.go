package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/consentstore"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// RelationshipService is the RelationshipService API over a
// [consentstore.Relationships] store: who treats whom, which policies see
// as context.treatingRelationship. A put or delete counts for the next
// Check. Mount it with [WithRelationshipService]; like every service but
// DecisionService it needs a caller grant. With [WithRelationshipAudit],
// puts and deletes are put on the audit chain before they are made (see
// [ChangeRecorder]).
type RelationshipService struct {
	store   consentstore.Relationships
	logger  *slog.Logger
	changes ChangeRecorder
}

var _ chaperonev1connect.RelationshipServiceHandler = (*RelationshipService)(nil)

// RelationshipOption configures a [RelationshipService].
type RelationshipOption func(*RelationshipService)

// WithRelationshipLogger sets the service's logger.
func WithRelationshipLogger(l *slog.Logger) RelationshipOption {
	return func(s *RelationshipService) { s.logger = l }
}

// WithRelationshipAudit records every put and delete in r, before it is
// made; when r cannot store the record the RPC fails with unavailable.
func WithRelationshipAudit(r ChangeRecorder) RelationshipOption {
	return func(s *RelationshipService) { s.changes = r }
}

// NewRelationshipService returns a RelationshipService storing into store.
func NewRelationshipService(store consentstore.Relationships, opts ...RelationshipOption) *RelationshipService {
	s := &RelationshipService{store: store, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithRelationshipService mounts svc on a [Server].
func WithRelationshipService(svc *RelationshipService) Option {
	return WithService(chaperonev1connect.RelationshipServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		return chaperonev1connect.NewRelationshipServiceHandler(svc, opts...)
	})
}

// Put implements [chaperonev1connect.RelationshipServiceHandler].
func (s *RelationshipService) Put(ctx context.Context, req *connect.Request[chaperonev1.RelationshipServicePutRequest]) (*connect.Response[chaperonev1.RelationshipServicePutResponse], error) {
	m := req.Msg.GetRelationship()
	r := consentstore.Relationship{ID: m.GetId(), Kind: m.GetKind(), Patient: m.GetPatient(), Practitioner: m.GetPractitioner(),
		Organization: m.GetOrganization(), Source: m.GetSource()}
	if m.GetStart() != nil {
		r.Start = m.GetStart().AsTime()
	}
	if m.GetEnd() != nil {
		r.End = m.GetEnd().AsTime()
	}
	r, err := r.Normalize()
	if err != nil {
		return nil, relationshipError(ctx, s.logger, "put relationship", err)
	}
	c := audit.Change{Action: audit.ChangeRelationshipPut, RelationshipID: r.ID, RelationshipKind: r.Kind,
		Patient: r.Patient, Subject: r.Practitioner, Organization: r.Organization, Source: r.Source,
		Start: timePtr(r.Start), End: timePtr(r.End)}
	done, err := s.audit().begin(ctx, c)
	if err != nil {
		return nil, err
	}
	r, err = s.store.PutRelationship(ctx, r)
	if err != nil {
		err = relationshipError(ctx, s.logger, "put relationship", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{})
	s.logger.InfoContext(ctx, "relationship stored", "relationship_id", r.ID, "kind", r.Kind)
	return connect.NewResponse(&chaperonev1.RelationshipServicePutResponse{Relationship: relationshipMsg(r)}), nil
}

// Delete implements [chaperonev1connect.RelationshipServiceHandler].
func (s *RelationshipService) Delete(ctx context.Context, req *connect.Request[chaperonev1.RelationshipServiceDeleteRequest]) (*connect.Response[chaperonev1.RelationshipServiceDeleteResponse], error) {
	done, err := s.audit().begin(ctx, audit.Change{Action: audit.ChangeRelationshipDelete, RelationshipID: req.Msg.GetId()})
	if err != nil {
		return nil, err
	}
	r, err := s.store.DeleteRelationship(ctx, req.Msg.GetId())
	if err != nil {
		err = relationshipError(ctx, s.logger, "delete relationship", err)
		done(err, audit.Change{})
		return nil, err
	}
	done(nil, audit.Change{Patient: r.Patient, Subject: r.Practitioner})
	s.logger.InfoContext(ctx, "relationship deleted", "relationship_id", r.ID)
	return connect.NewResponse(&chaperonev1.RelationshipServiceDeleteResponse{Relationship: relationshipMsg(r)}), nil
}

// List implements [chaperonev1connect.RelationshipServiceHandler].
func (s *RelationshipService) List(ctx context.Context, req *connect.Request[chaperonev1.RelationshipServiceListRequest]) (*connect.Response[chaperonev1.RelationshipServiceListResponse], error) {
	var (
		rs  []consentstore.Relationship
		err error
	)
	if p := req.Msg.GetPatient(); p != "" {
		rs, err = s.store.PatientRelationships(ctx, p)
	} else {
		rs, err = s.store.PractitionerRelationships(ctx, req.Msg.GetPractitioner())
	}
	if err != nil {
		return nil, relationshipError(ctx, s.logger, "list relationships", err)
	}
	out := &chaperonev1.RelationshipServiceListResponse{Relationships: make([]*chaperonev1.Relationship, len(rs))}
	for i, r := range rs {
		out.Relationships[i] = relationshipMsg(r)
	}
	return connect.NewResponse(out), nil
}

func (s *RelationshipService) audit() changeLog { return changeLog{rec: s.changes, logger: s.logger} }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func relationshipMsg(r consentstore.Relationship) *chaperonev1.Relationship {
	m := &chaperonev1.Relationship{Id: r.ID, Kind: r.Kind, Patient: r.Patient, Practitioner: r.Practitioner,
		Organization: r.Organization, Source: r.Source}
	if !r.Start.IsZero() {
		m.Start = timestamppb.New(r.Start)
	}
	if !r.End.IsZero() {
		m.End = timestamppb.New(r.End)
	}
	if !r.UpdatedAt.IsZero() {
		m.UpdateTime = timestamppb.New(r.UpdatedAt)
	}
	return m
}

// relationshipError maps a store error to a Connect error; invalid input
// names the field (relationship.patient).
func relationshipError(ctx context.Context, logger *slog.Logger, op string, err error) error {
	switch {
	case errors.Is(err, consentstore.ErrInvalid):
		msg := err.Error()
		if i := strings.Index(msg, "relationship."); i >= 0 {
			msg = msg[i:]
		}
		return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
	case errors.Is(err, consentstore.ErrRelationshipNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("relationship not found"))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	}
	logger.ErrorContext(ctx, op, "error", err)
	return connect.NewError(connect.CodeUnavailable, errors.New("relationship store unavailable"))
}
