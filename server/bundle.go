package server

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/bundles"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// BundleStatuser reports the active policy bundle and the last load error;
// [*bundles.Loader] is one.
type BundleStatuser interface {
	Status() bundles.Status
}

var _ BundleStatuser = (*bundles.Loader)(nil)

// WithBundleService mounts BundleService, answering Status from src.
func WithBundleService(src BundleStatuser) Option {
	return WithService(chaperonev1connect.BundleServiceName, func(opts ...connect.HandlerOption) (string, http.Handler) {
		return chaperonev1connect.NewBundleServiceHandler(&bundleService{src: src}, opts...)
	})
}

type bundleService struct {
	src BundleStatuser
}

var _ chaperonev1connect.BundleServiceHandler = (*bundleService)(nil)

// Status implements [chaperonev1connect.BundleServiceHandler].
func (s *bundleService) Status(context.Context, *connect.Request[chaperonev1.BundleServiceStatusRequest]) (*connect.Response[chaperonev1.BundleServiceStatusResponse], error) {
	st := s.src.Status()
	resp := &chaperonev1.BundleServiceStatusResponse{
		ActiveRevision: st.Revision,
		Name:           st.Name,
		Digest:         st.Digest,
		Signers:        st.Signers,
		LastError:      st.LastError,
		Source:         st.Source,
	}
	if !st.LoadedAt.IsZero() {
		resp.LoadedAt = timestamppb.New(st.LoadedAt)
	}
	if !st.LastErrorAt.IsZero() {
		resp.LastErrorAt = timestamppb.New(st.LastErrorAt)
	}
	return connect.NewResponse(resp), nil
}
