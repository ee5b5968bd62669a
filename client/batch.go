package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// batcher coalesces concurrent Checks into BatchChecks.
type batcher struct {
	client *Client
	window time.Duration
	max    int

	mu      sync.Mutex
	pending []*pendingCheck
	gen     uint64      // counts batches taken, so a late timer takes no other batch
	timer   *time.Timer // the open batch's window
}

// pendingCheck is one Check waiting in a batch.
type pendingCheck struct {
	req  *chaperonev1.CheckRequest
	key  cacheKey
	done chan *chaperonev1.CheckResponse // buffered: the sender never waits
}

// check adds req to the open batch and waits for its answer or for ctx.
func (b *batcher) check(ctx context.Context, req *chaperonev1.CheckRequest, key cacheKey) *chaperonev1.CheckResponse {
	p := &pendingCheck{req: req, key: key, done: make(chan *chaperonev1.CheckResponse, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, p)
	var full []*pendingCheck
	switch {
	case len(b.pending) >= b.max:
		full = b.take()
	case len(b.pending) == 1:
		gen := b.gen
		b.timer = time.AfterFunc(b.window, func() { b.flush(gen) })
	}
	b.mu.Unlock()
	if full != nil {
		go b.send(full)
	}
	select {
	case resp := <-p.done:
		return resp
	case <-ctx.Done():
		code := connect.CodeCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = connect.CodeDeadlineExceeded
		}
		return deny(ReasonUnavailable, "the PDP did not decide: "+code.String())
	}
}

// take empties the open batch and returns it; b.mu is held.
func (b *batcher) take() []*pendingCheck {
	out := b.pending
	b.pending = nil
	b.gen++
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	return out
}

// flush sends batch gen when its window ends, unless it was already sent
// full.
func (b *batcher) flush(gen uint64) {
	b.mu.Lock()
	if b.gen != gen || len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	batch := b.take()
	b.mu.Unlock()
	b.send(batch)
}

// send asks for batch, under a deadline of its own (one waiter giving up
// does not end the others' call), and hands each waiter its answer.
func (b *batcher) send(batch []*pendingCheck) {
	ctx, cancel := context.WithTimeout(context.Background(), b.client.timeout)
	defer cancel()
	reqs := make([]*chaperonev1.CheckRequest, len(batch))
	keys := make([]cacheKey, len(batch))
	for i, p := range batch {
		reqs[i], keys[i] = p.req, p.key
	}
	for i, resp := range b.client.sendBatch(ctx, reqs, keys) {
		batch[i].done <- resp
	}
}
