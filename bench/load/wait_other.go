//go:build !linux

package load

func newWaiter(bool) waiter { return newTimerWaiter() }
