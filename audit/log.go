package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Defaults of a [Log].
const (
	DefaultQueueSize          = 65536
	DefaultEnqueueTimeout     = 100 * time.Millisecond
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = time.Minute
	DefaultBatchSize          = 8192
	DefaultSyncDelay          = 10 * time.Millisecond
	DefaultChangeTimeout      = 5 * time.Second
)

// Errors of a [Log]. Both match [ErrUnavailable]: the decision they belong
// to must not be answered as made.
var (
	ErrUnavailable = errors.New("audit unavailable")
	ErrQueueFull   = fmt.Errorf("%w: queue full", ErrUnavailable)
	ErrClosed      = fmt.Errorf("%w: log closed", ErrUnavailable)
)

// Log is the decision log: it queues records and writes them to a [Sink]
// from one goroutine. It implements the server's Recorder.
type Log struct {
	sink   Sink
	signer *Signer
	logger *slog.Logger
	now    func() time.Time

	queue          chan item
	failClosed     bool
	enqueueTimeout time.Duration
	cpEvery        int
	cpInterval     time.Duration
	batchSize      int
	syncDelay      time.Duration
	changeTimeout  time.Duration

	closed   atomic.Bool
	inflight atomic.Int64
	stop     chan struct{} // closed by Close: drain and exit
	done     chan struct{} // closed by the writer when it has exited
	abort    context.CancelCauseFunc
	runCtx   context.Context
	once     sync.Once
	closeErr error
	unsaved  atomic.Int64 // records the writer gave up on (Close deadline)

	written     atomic.Uint64
	dropped     atomic.Uint64
	rejected    atomic.Uint64
	sinkErrors  atomic.Uint64
	checkpoints atomic.Uint64
	sinkDown    atomic.Bool
}

// Option configures a [Log].
type Option func(*Log)

// WithSigner signs a checkpoint every so many records or so much time
// ([WithCheckpoints]); without a signer no checkpoints are written.
func WithSigner(s *Signer) Option { return func(l *Log) { l.signer = s } }

// WithCheckpoints sets how often checkpoints are written: after every n
// records or every d, whichever comes first (while records arrive).
func WithCheckpoints(n int, d time.Duration) Option {
	return func(l *Log) { l.cpEvery, l.cpInterval = n, d }
}

// WithQueueSize sets how many records may wait for the sink.
func WithQueueSize(n int) Option { return func(l *Log) { l.queue = make(chan item, max(n, 1)) } }

// WithFailClosed chooses what happens when the queue stays full for the
// enqueue timeout (the sink is failing or too slow): true (the default)
// makes Record return [ErrQueueFull], so the decision is answered DENY
// AUDIT_UNAVAILABLE; false answers the decision, counts the record as
// dropped ([Stats].Dropped), logs it and notes the count in the chain.
func WithFailClosed(on bool) Option { return func(l *Log) { l.failClosed = on } }

// WithEnqueueTimeout sets how long Record waits for room in a full queue
// (backpressure) before failing or dropping.
func WithEnqueueTimeout(d time.Duration) Option { return func(l *Log) { l.enqueueTimeout = d } }

// WithBatchSize sets the most records written (and fsynced) at once.
func WithBatchSize(n int) Option { return func(l *Log) { l.batchSize = max(n, 1) } }

// WithSyncDelay sets the group commit: after writing a batch smaller than
// the batch size, the writer waits d before taking the next one, so the
// records arriving meanwhile share one write and one fsync (they wait in
// the queue and count against its size). It delays when a record is
// durable by up to d, never the decision. 0 writes as soon as a record
// arrives.
func WithSyncDelay(d time.Duration) Option { return func(l *Log) { l.syncDelay = max(d, 0) } }

// WithChangeTimeout bounds how long [Log.Change] waits for its record to
// be stored before it reports [ErrUnavailable].
func WithChangeTimeout(d time.Duration) Option { return func(l *Log) { l.changeTimeout = d } }

// WithLogger sets the logger of sink failures and drops.
func WithLogger(lg *slog.Logger) Option { return func(l *Log) { l.logger = lg } }

// WithClock sets the clock of record times (tests).
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// New starts a log writing to sink. Close it to drain the queue.
func New(sink Sink, opts ...Option) *Log {
	l := &Log{
		sink:           sink,
		logger:         slog.New(slog.DiscardHandler),
		now:            time.Now,
		queue:          make(chan item, DefaultQueueSize),
		failClosed:     true,
		enqueueTimeout: DefaultEnqueueTimeout,
		cpEvery:        DefaultCheckpointEvery,
		cpInterval:     DefaultCheckpointInterval,
		batchSize:      DefaultBatchSize,
		syncDelay:      DefaultSyncDelay,
		changeTimeout:  DefaultChangeTimeout,
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
	}
	for _, o := range opts {
		o(l)
	}
	l.runCtx, l.abort = context.WithCancelCause(context.Background())
	go l.run()
	return l
}

// item is what waits in the queue: a decision's request and response, made
// into a [Record] by the writer, or a record made already. done, when set,
// is told once the record is stored (nil) or given up (an error).
type item struct {
	at     time.Time
	caller string
	req    *chaperonev1.CheckRequest
	resp   *chaperonev1.CheckResponse
	rec    *Record
	done   chan<- error
}

func (it *item) record() Record {
	if it.rec != nil {
		return *it.rec
	}
	return newDecision(it.at, it.caller, it.req, it.resp)
}

// Record queues the record of one decision asked by caller (the
// authenticated caller's name, see [Record].Caller). It does no I/O and does not
// copy on the request goroutine: it retains req and resp in the queue, and
// the writer goroutine copies their identifiers into a [Record] (which then
// shares nothing with them) before writing it. The caller must therefore
// not modify req or resp after Record returns (the server does not; it may
// replace its response, never change it). When the queue is full it waits
// up to the enqueue timeout, then returns [ErrQueueFull] (fail-closed) or
// counts a drop (fail-open). After Close it returns [ErrClosed].
func (l *Log) Record(ctx context.Context, caller string, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) error {
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if l.closed.Load() {
		return ErrClosed
	}
	return l.enqueue(ctx, item{at: l.now().UTC(), caller: caller, req: req, resp: resp})
}

// Review records a review of a decision by caller and waits until it is
// stored, like [Log.Change].
func (l *Log) Review(ctx context.Context, caller string, rv Review) error {
	return l.store(ctx, &Record{Kind: KindReview, Caller: caller, DecisionID: rv.DecisionID, Review: &rv})
}

// Change records an administrative change made by caller and waits until
// the record is stored (written and fsynced, or acknowledged by Redis),
// at most the change timeout ([WithChangeTimeout]) or until ctx ends. An
// error matches [ErrUnavailable]: the change must then not be made. It
// never drops a record, even with fail-open configured. A record that
// timed out stays queued and may still be stored later; that is why a
// change is recorded before it is applied and its outcome after (see
// [Change]).
func (l *Log) Change(ctx context.Context, caller string, c Change) error {
	return l.store(ctx, &Record{Kind: KindChange, Caller: caller, Change: &c})
}

// ChangeOutcome queues the outcome record of a change without waiting: the
// change was recorded already, so the outcome is best effort (its absence
// reads as "outcome unknown").
func (l *Log) ChangeOutcome(ctx context.Context, caller string, c Change) error {
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if l.closed.Load() {
		return ErrClosed
	}
	return l.enqueueStrict(ctx, item{rec: &Record{Kind: KindChange, Time: l.now().UTC(), Caller: caller, Change: &c}})
}

// store queues r and waits until the writer has stored it.
func (l *Log) store(ctx context.Context, r *Record) error {
	done := make(chan error, 1)
	err := func() error {
		l.inflight.Add(1)
		defer l.inflight.Add(-1)
		if l.closed.Load() {
			return ErrClosed
		}
		r.Time = l.now().UTC()
		return l.enqueueStrict(ctx, item{rec: r, done: done})
	}()
	if err != nil {
		return err
	}
	t := time.NewTimer(l.changeTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w: record not stored within %s", ErrUnavailable, l.changeTimeout)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
	}
}

// enqueueStrict queues r, waiting up to the enqueue timeout for room, and
// fails when there is none, whatever the fail-open setting.
func (l *Log) enqueueStrict(ctx context.Context, r item) error {
	t := time.NewTimer(l.enqueueTimeout)
	defer t.Stop()
	select {
	case l.queue <- r:
		return nil
	case <-t.C:
		return ErrQueueFull
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
	}
}

func (l *Log) enqueue(ctx context.Context, r item) error {
	select {
	case l.queue <- r:
		return nil
	default:
	}
	t := time.NewTimer(l.enqueueTimeout)
	defer t.Stop()
	select {
	case l.queue <- r:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if l.failClosed {
		l.rejected.Add(1)
		return ErrQueueFull
	}
	l.dropped.Add(1) // logged and written to the chain by the writer
	return nil
}

// Stats are the log's counters, for metrics.
type Stats struct {
	QueueDepth    int    // records waiting for the sink
	QueueCapacity int    // size of the queue
	Written       uint64 // records stored by the sink (checkpoints included)
	Dropped       uint64 // decisions answered without a record (fail-open)
	Rejected      uint64 // decisions denied because the queue was full (fail-closed)
	SinkErrors    uint64 // failed appends (each retried)
	Checkpoints   uint64 // checkpoints stored
	SinkHealthy   bool   // the last append succeeded
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{
		QueueDepth:    len(l.queue),
		QueueCapacity: cap(l.queue),
		Written:       l.written.Load(),
		Dropped:       l.dropped.Load(),
		Rejected:      l.rejected.Load(),
		SinkErrors:    l.sinkErrors.Load(),
		Checkpoints:   l.checkpoints.Load(),
		SinkHealthy:   !l.sinkDown.Load(),
	}
}

// ErrSinkDown is what [Log.Healthy] reports while appends fail.
var ErrSinkDown = fmt.Errorf("%w: the audit sink is failing", ErrUnavailable)

// Healthy reports whether the log is keeping records: nil, or an error
// matching [ErrUnavailable] while the sink is failing (appends are being
// retried), after Close, or once the log has stopped for good. It is cheap
// (atomic loads), for readiness probes.
func (l *Log) Healthy() error {
	switch {
	case l.closed.Load():
		return ErrClosed
	case l.sinkDown.Load():
		return ErrSinkDown
	}
	return nil
}

// Close stops accepting records, writes every queued record and a final
// checkpoint, and closes the sink. If ctx ends first (the sink keeps
// failing) it gives up and returns an error counting the records that were
// not written.
func (l *Log) Close(ctx context.Context) error {
	l.once.Do(func() {
		l.closed.Store(true)
		// Records that passed the closed check before it was set are
		// being queued: wait for them, so none is left behind.
		for l.inflight.Load() > 0 {
			time.Sleep(50 * time.Microsecond)
		}
		close(l.stop)
		select {
		case <-l.done:
		case <-ctx.Done():
			l.abort(context.Cause(ctx))
			<-l.done
		}
		var errs []error
		if n := l.unsaved.Load(); n > 0 {
			errs = append(errs, fmt.Errorf("audit: %d records not written: %w", n, context.Cause(ctx)))
		}
		if err := l.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("audit: close sink: %w", err))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// run is the writer: it takes batches off the queue, adds drop notes and
// checkpoints, and appends them until they are stored.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(min(l.cpInterval, time.Second))
	defer tick.Stop()
	var (
		batch      = make([]Record, 0, l.batchSize)
		waiters    []chan<- error // of records in batch
		sinceCP    int
		lastCP     = l.now()
		noted      uint64 // drops already in the chain
		dropsSince = l.now()
	)
	flush := func(final bool) bool {
		if d := l.dropped.Load(); d > noted {
			l.logger.Warn("audit: decisions answered without a record (fail-open, queue full)",
				slog.Uint64("dropped", d-noted), slog.Uint64("dropped_total", d))
			batch = append(batch, Record{Kind: KindDrop, Time: l.now().UTC(), Drop: &Drop{Count: d - noted, Since: dropsSince.UTC()}})
			noted, dropsSince = d, l.now()
		}
		n := sinceCP + len(batch)
		if l.signer != nil && n > 0 && (final || n >= l.cpEvery || l.now().Sub(lastCP) >= l.cpInterval) {
			batch = append(batch, Record{Kind: KindCheckpoint, Time: l.now().UTC()})
			n, lastCP = 0, l.now()
		}
		if len(batch) == 0 {
			return true
		}
		if !l.write(batch) {
			for _, w := range waiters {
				w <- fmt.Errorf("%w: the sink failed until the log was closed", ErrUnavailable)
			}
			waiters = waiters[:0]
			return false
		}
		for _, w := range waiters {
			w <- nil
		}
		waiters = waiters[:0]
		sinceCP = n
		batch = batch[:0]
		return true
	}
	for {
		select {
		case it := <-l.queue:
			batch = append(batch, it.record())
			if it.done != nil {
				waiters = append(waiters, it.done)
			}
			l.fill(&batch, &waiters)
		case <-tick.C:
		case <-l.stop:
			for {
				l.fill(&batch, &waiters)
				if len(batch) == 0 {
					break
				}
				if !flush(false) {
					l.unsaved.Add(int64(len(batch) + len(l.queue)))
					return
				}
			}
			if !flush(true) {
				l.unsaved.Add(int64(len(batch)))
			}
			return
		}
		wrote := len(batch)
		if !flush(false) {
			// Aborted (Close deadline) while the sink was failing.
			l.unsaved.Add(int64(len(batch) + len(l.queue)))
			return
		}
		if wrote > 0 && wrote < l.batchSize && l.syncDelay > 0 {
			l.linger()
		}
	}
}

// fill moves queued records into the batch without waiting.
// linger waits the sync delay, or until Close, leaving arriving records
// in the queue.
func (l *Log) linger() {
	t := time.NewTimer(l.syncDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.stop:
	}
}

func (l *Log) fill(batch *[]Record, waiters *[]chan<- error) {
	for len(*batch) < l.batchSize {
		select {
		case it := <-l.queue:
			*batch = append(*batch, it.record())
			if it.done != nil {
				*waiters = append(*waiters, it.done)
			}
		default:
			return
		}
	}
}

// write appends the batch, retrying with backoff until it is stored or the
// log is aborted. It reports whether the batch was stored.
func (l *Log) write(batch []Record) bool {
	b := NewBatch(l.signer, batch...)
	backoff := 10 * time.Millisecond
	var lastLog time.Time
	for {
		err := l.sink.Append(l.runCtx, b)
		if err == nil {
			if l.sinkDown.Swap(false) {
				l.logger.Info("audit: sink recovered")
			}
			l.written.Add(uint64(len(batch)))
			for i := range batch {
				if batch[i].Kind == KindCheckpoint {
					l.checkpoints.Add(1)
				}
			}
			return true
		}
		l.sinkErrors.Add(1)
		l.sinkDown.Store(true)
		if time.Since(lastLog) >= time.Second {
			l.logger.Error("audit: append failed; retrying", slog.String("error", err.Error()),
				slog.Int("batch", len(batch)), slog.Int("queued", len(l.queue)))
			lastLog = time.Now()
		}
		select {
		case <-l.runCtx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
