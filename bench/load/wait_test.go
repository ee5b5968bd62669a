package load

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaiter(t *testing.T) {
	t.Parallel()
	for _, precise := range []bool{true, false} {
		w := newWaiter(precise)
		defer w.close()
		for _, d := range []time.Duration{time.Microsecond, 300 * time.Microsecond, 3 * time.Millisecond} {
			start := time.Now()
			if err := w.wait(t.Context(), d); err != nil {
				t.Fatalf("precise=%t: wait(%v) = %v", precise, d, err)
			}
			if got := time.Since(start); got < d {
				t.Errorf("precise=%t: wait(%v) returned after %v", precise, d, got)
			}
		}
		// A cancelled run ends a long wait.
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(10*time.Millisecond, cancel)
		done := make(chan error, 1)
		go func() { done <- w.wait(ctx, time.Hour) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("precise=%t: cancelled wait = %v, want context.Canceled", precise, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("precise=%t: wait not ended by cancel", precise)
		}
		// The waiter still works after a cancelled wait.
		if err := w.wait(t.Context(), time.Millisecond); err != nil {
			t.Errorf("precise=%t: wait after cancel = %v", precise, err)
		}
	}
}
