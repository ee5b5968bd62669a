package load

import (
	"context"
	"time"
)

// waiter sleeps an open-loop worker until its next request is due.
type waiter interface {
	// wait returns after d, or with ctx's error when ctx ends first.
	wait(ctx context.Context, d time.Duration) error
	close()
}

// timerWaiter waits on a Go timer. When the process is idle the runtime
// sleeps in epoll_wait, whose timeout has millisecond resolution, so a
// wait shorter than 1 ms lasts about 1 ms: the send lag this adds is the
// generator's, not the target's.
type timerWaiter struct{ t *time.Timer }

func newTimerWaiter() *timerWaiter {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerWaiter{t: t}
}

func (w *timerWaiter) wait(ctx context.Context, d time.Duration) error {
	w.t.Reset(d)
	select {
	case <-w.t.C:
		return nil
	case <-ctx.Done():
		w.t.Stop()
		return ctx.Err()
	}
}

func (w *timerWaiter) close() { w.t.Stop() }
