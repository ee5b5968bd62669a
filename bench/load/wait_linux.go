package load

import (
	"context"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fdWaiter waits on a timerfd read through the runtime's poller: the
// kernel wakes the worker when the timer expires, with microsecond
// precision, where a Go timer shorter than 1 ms would sleep about 1 ms
// (see [timerWaiter]). It costs two system calls per wait.
type fdWaiter struct {
	fd  int      // for timerfd_settime; f.Fd() would make the file blocking
	f   *os.File // the same descriptor, non-blocking, in the poller
	buf [8]byte
}

// newWaiter returns a kernel timer when precise, else a Go timer.
func newWaiter(precise bool) waiter {
	if !precise {
		return newTimerWaiter()
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerWaiter()
	}
	return &fdWaiter{fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}
}

func (w *fdWaiter) wait(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))}
	if err := unix.TimerfdSettime(w.fd, 0, &spec, nil); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = w.f.SetReadDeadline(time.Unix(1, 0)) })
	_, err := io.ReadFull(w.f, w.buf[:])
	if !stop() {
		_ = w.f.SetReadDeadline(time.Time{}) // for the next wait
		return ctx.Err()
	}
	return err
}

func (w *fdWaiter) close() { _ = w.f.Close() }
