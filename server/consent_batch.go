package server

import (
	"context"
	"errors"
	"sync"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// batchWorkers is how many items of one PutBatch are stored at once: the
// store's round trips for several consents overlap.
const batchWorkers = 16

// PutBatch implements [chaperonev1connect.ConsentServiceHandler]: every
// item goes through [ConsentService.Put] (the same checks, change records
// and store write), up to 16 at a time, and its outcome is reported in
// order. A refused item does not stop the others.
func (s *ConsentService) PutBatch(ctx context.Context, req *connect.Request[chaperonev1.ConsentServicePutBatchRequest]) (*connect.Response[chaperonev1.ConsentServicePutBatchResponse], error) {
	items := req.Msg.GetItems()
	results := make([]*chaperonev1.ConsentServicePutBatchResult, len(items))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(batchWorkers, len(items)) {
		wg.Go(func() {
			for i := range work {
				one := connect.NewRequest(items[i])
				for k, v := range req.Header() {
					one.Header()[k] = v
				}
				res, err := s.Put(ctx, one)
				if err != nil {
					results[i] = &chaperonev1.ConsentServicePutBatchResult{Code: connect.CodeOf(err).String(), Message: errorMessage(err)}
					continue
				}
				results[i] = &chaperonev1.ConsentServicePutBatchResult{Id: res.Msg.GetId(), Version: res.Msg.GetVersion()}
			}
		})
	}
	for i := range items {
		work <- i
	}
	close(work)
	wg.Wait()
	return connect.NewResponse(&chaperonev1.ConsentServicePutBatchResponse{Results: results}), nil
}

// errorMessage is what a Connect error tells its client.
func errorMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return "internal error"
}
