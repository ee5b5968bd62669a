package server

import (
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/chaperone-pdp/chaperone/internal/warmstack"
)

// HTTP/2 requests run on warm goroutines.
//
// Go's HTTP/2 server starts a goroutine for every stream (every gRPC
// call) at the runtime's initial stack size; a decision needs a deeper
// stack (connect-go, the guard, the engine, the audit record), so every
// call grew its stack two or three times, copying it each time: 7-10% of
// the server's CPU per ext_authz Check. An HTTP/1.1 connection's
// goroutine keeps its grown stack from one request to the next, so that
// path never paid it. warmStacks hands an HTTP/2 request to an idle
// goroutine of a small pool whose stack is already grown (a handoff costs
// two goroutine wake-ups), or starts one, or, with all of them busy, runs
// it as before. The stream's goroutine waits for the handler to return,
// so net/http sees the same ServeHTTP call; a panic is raised again on
// it (net/http's http.ErrAbortHandler included).
type warmStacks struct {
	next http.Handler
	work chan *stackTask // unbuffered: a send succeeds only to an idle worker
	n    atomic.Int32    // workers alive
	max  int32
	idle time.Duration // a worker idle this long ends
}

func newWarmStacks(next http.Handler) *warmStacks {
	return &warmStacks{
		next: next,
		work: make(chan *stackTask),
		max:  int32(8 * runtime.GOMAXPROCS(0)),
		idle: time.Minute,
	}
}

type stackTask struct {
	w     http.ResponseWriter
	r     *http.Request
	done  chan any // the handler's panic value, or nil
	exit  bool     // the handler called runtime.Goexit
	owner *warmStacks
}

func (ws *warmStacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		ws.next.ServeHTTP(w, r)
		return
	}
	t := &stackTask{w: w, r: r, done: make(chan any, 1), owner: ws}
	select {
	case ws.work <- t:
	default:
		if ws.n.Add(1) > ws.max {
			ws.n.Add(-1)
			ws.next.ServeHTTP(w, r)
			return
		}
		go ws.worker(t)
	}
	if v := <-t.done; v != nil {
		panic(v)
	}
	if t.exit {
		runtime.Goexit()
	}
}

func (ws *warmStacks) worker(t *stackTask) {
	warmstack.Grow()
	idle := time.NewTimer(ws.idle)
	defer idle.Stop()
	for {
		t.run()
		idle.Reset(ws.idle)
		select {
		case t = <-ws.work:
		case <-idle.C:
			ws.n.Add(-1)
			return
		}
	}
}

// run serves the task's request and hands its end to the stream's
// goroutine: returned, panicked (recovered here, raised there) or
// runtime.Goexit (this worker then ends as the handler asked).
func (t *stackTask) run() {
	returned := false
	defer func() {
		v := recover()
		if v == nil && !returned {
			t.exit = true
			t.owner.n.Add(-1)
		}
		t.done <- v
	}()
	t.owner.next.ServeHTTP(t.w, t.r)
	returned = true
}
