package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
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

	instance   string
	join       bool // another writer owns the chain (audit review)
	joinClosed bool // ... and it was closed cleanly when this one joined
	durable    bool
	anchor     Anchor
	anchorErrs atomic.Uint64
	anchored   atomic.Uint64         // seq of the last head stored in the anchor
	unanchored *AnchorHead           // writer goroutine only: a head the anchor has yet to take
	halted     atomic.Pointer[error] // set once the writer stopped for good
	head       Head                  // writer goroutine only: the head after our last append
	fields     *FieldKeys            // seals identifying fields (nil: clear text)
}

// Option configures a [Log].
type Option func(*Log)

// WithSigner signs a checkpoint every so many records or so much time
// ([WithCheckpoints]); without a signer no checkpoints are written.
func WithSigner(s *Signer) Option { return func(l *Log) { l.signer = s } }

// WithCheckpoints sets how often checkpoints are written: after every n
// records or every d, whichever comes first (while records arrive). n below
// 1 is 1; d of 0 or less keeps the default.
func WithCheckpoints(n int, d time.Duration) Option {
	return func(l *Log) {
		l.cpEvery = max(n, 1)
		if d > 0 {
			l.cpInterval = d
		}
	}
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

// WithInstance names the writer in the genesis and restart records (the
// server's instance id, by default its host name).
func WithInstance(id string) Option {
	return func(l *Log) { l.instance = strings.ToValidUTF8(id, "\uFFFD") }
}

// WithJoin makes the log a guest on a chain another writer owns (chaperone
// audit review appending to a server's log): it writes no genesis or
// restart record; with a signer it signs a checkpoint before and after
// each batch of its records, and its last is marked as a clean shutdown
// when closed says the chain was closed cleanly when the guest joined.
func WithJoin(closed bool) Option { return func(l *Log) { l.join, l.joinClosed = true, closed } }

// WithDurable chooses when Record returns: false (the default, "queued")
// returns once the record is queued; true ("durable") returns only once
// the record is stored (written and fsynced by a [FileSink], acknowledged
// by Redis for a [RedisSink]), so no answered decision can be missing from
// the log after a crash. Durable records skip the group-commit delay:
// records arriving during one write share the next. A durable record is
// never dropped: with fail-open configured, a full queue still fails it.
func WithDurable(on bool) Option { return func(l *Log) { l.durable = on } }

// WithAnchor writes the head of every checkpoint to a, a second place an
// attacker who can rewrite the log may not reach ([FileAnchor],
// [RedisAnchor]); verification with the anchor then catches a log cut
// after the fact. At start the writer reads the anchor and refuses
// ([ErrRewound], the log halts) to continue a log that ends before the
// anchored head. A failed anchor write is logged, counted
// ([Stats].AnchorErrors) and retried with the next checkpoint or tick; it
// does not stop decisions.
func WithAnchor(a Anchor) Option { return func(l *Log) { l.anchor = a } }

// WithFieldKeys seals the identifying fields of every record under the
// key set's primary key (see [FieldKeys]); readers need the same key set
// to find and read them, verification needs none.
func WithFieldKeys(fk *FieldKeys) Option { return func(l *Log) { l.fields = fk } }

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
	if l.instance == "" {
		l.instance, _ = os.Hostname()
	}
	// The genesis declares the interval in whole milliseconds; the writer
	// keeps exactly the cadence it declares.
	l.cpInterval = max(l.cpInterval.Truncate(time.Millisecond), time.Millisecond)
	l.runCtx, l.abort = context.WithCancelCause(context.Background())
	// The opening is made before any record can be queued, so its time
	// precedes theirs.
	w := &writer{l: l, batch: make([]Record, 0, l.batchSize), dropsAt: l.now()}
	w.opening()
	go l.run(w)
	return l
}

// item is what waits in the queue: a decision's request and response, made
// into a [Record] by the writer, or a record made already. ack, when set,
// is settled once the record is stored or given up.
type item struct {
	at     time.Time
	caller string
	req    *chaperonev1.CheckRequest
	resp   *chaperonev1.CheckResponse
	rec    *Record
	ack    *ack
}

// prepare makes the record of an item, its identifying fields sealed when
// the log has field keys. The writer calls it, off the request goroutine.
func (l *Log) prepare(it *item) Record {
	r := it.record()
	if l.fields != nil {
		l.fields.Seal(&r)
	}
	return r
}

func (it *item) record() Record {
	if it.rec != nil {
		return *it.rec
	}
	return newDecision(it.at, it.caller, it.req, it.resp)
}

// ack is what a durable Record waits for: the writer settles it when the
// records it counts are stored, or fails it.
type ack struct {
	pending atomic.Int64
	once    sync.Once
	done    chan struct{}
	err     error // set before done is closed
}

func newAck(n int) *ack {
	a := &ack{done: make(chan struct{})}
	a.pending.Store(int64(n))
	if n == 0 {
		close(a.done)
	}
	return a
}

// stored counts one record stored.
func (a *ack) stored() {
	if a.pending.Add(-1) == 0 {
		a.once.Do(func() { close(a.done) })
	}
}

// fail settles the ack with err.
func (a *ack) fail(err error) { a.once.Do(func() { a.err = err; close(a.done) }) }

func (a *ack) wait(ctx context.Context) error {
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the record to be stored: %w", ErrUnavailable, context.Cause(ctx))
	}
}

// ErrHalted means the writer stopped for good: the log's head moved
// backwards or the log was replaced under it ([ErrRewound]). Only a
// restart, after an operator has looked, resumes.
var ErrHalted = fmt.Errorf("%w: the writer has stopped", ErrUnavailable)

func (l *Log) haltErr() error {
	if e := l.halted.Load(); e != nil {
		return fmt.Errorf("%w: %w", ErrHalted, *e)
	}
	return nil
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
	if err := l.haltErr(); err != nil {
		l.rejected.Add(1)
		return err
	}
	it := item{at: l.now().UTC(), caller: caller, req: req, resp: resp}
	if !l.durable {
		return l.enqueue(ctx, it)
	}
	it.ack = newAck(1)
	if err := l.enqueue(ctx, it); err != nil {
		return err
	}
	return it.ack.wait(ctx)
}

// RecordAll records the decisions of one BatchCheck: resps[i] answers
// reqs[i]. It returns nil when every record was kept, else one error per
// decision (nil for those kept). With [WithDurable] the decisions share one
// wait for the sink, instead of one each.
func (l *Log) RecordAll(ctx context.Context, caller string, reqs []*chaperonev1.CheckRequest, resps []*chaperonev1.CheckResponse) []error {
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	var errs []error
	failAt := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(reqs))
		}
		errs[i] = err
	}
	err := l.haltErr()
	if l.closed.Load() {
		err = ErrClosed
	}
	if err != nil {
		for i := range reqs {
			failAt(i, err)
		}
		return errs
	}
	var a *ack
	if l.durable {
		a = newAck(len(reqs))
	}
	at := l.now().UTC()
	queued := make([]bool, len(reqs))
	for i := range reqs {
		if err := l.enqueue(ctx, item{at: at, caller: caller, req: reqs[i], resp: resps[i], ack: a}); err != nil {
			failAt(i, err)
			if a != nil {
				a.stored() // not queued: nothing to wait for
			}
			continue
		}
		queued[i] = true
	}
	if a != nil {
		if err := a.wait(ctx); err != nil {
			for i := range reqs {
				if queued[i] {
					failAt(i, err)
				}
			}
		}
	}
	return errs
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
	if err := l.haltErr(); err != nil {
		return err
	}
	return l.enqueueStrict(ctx, item{rec: &Record{Kind: KindChange, Time: l.now().UTC(), Caller: caller, Change: &c}})
}

// store queues r and waits until the writer has stored it.
func (l *Log) store(ctx context.Context, r *Record) error {
	a := newAck(1)
	err := func() error {
		l.inflight.Add(1)
		defer l.inflight.Add(-1)
		if l.closed.Load() {
			return ErrClosed
		}
		if err := l.haltErr(); err != nil {
			return err
		}
		r.Time = l.now().UTC()
		return l.enqueueStrict(ctx, item{rec: r, ack: a})
	}()
	if err != nil {
		return err
	}
	t := time.NewTimer(l.changeTimeout)
	defer t.Stop()
	select {
	case <-a.done:
		return a.err
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
	if l.failClosed || r.ack != nil {
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
	Halted        bool   // the writer stopped for good (head moved backwards, log replaced): decisions are denied
	AnchorErrors  uint64 // failed anchor writes
	AnchoredSeq   uint64 // the last checkpoint stored in the anchor
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
		Halted:        l.halted.Load() != nil,
		AnchorErrors:  l.anchorErrs.Load(),
		AnchoredSeq:   l.anchored.Load(),
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
	case l.halted.Load() != nil:
		return l.haltErr()
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
			cause := l.haltErr()
			if cause == nil {
				cause = context.Cause(ctx)
			}
			errs = append(errs, fmt.Errorf("audit: %d records not written: %w", n, cause))
		}
		if err := l.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("audit: close sink: %w", err))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// writer is the state of the writer goroutine.
type writer struct {
	l       *Log
	batch   []Record
	acks    []*ack    // acks[i] is settled when batch[i] is stored (nil: none)
	sinceCP int       // unsigned records since the last signed one (written or batched)
	lastCP  time.Time // time of the last signed record (written or batched)
	noted   uint64    // drops already in the chain
	dropsAt time.Time
}

// add appends r to the batch, preceded by a checkpoint when the cadence
// requires one (the rule [VerifyWith] checks): CheckpointEvery unsigned
// records since the last signed one, or this record comes the checkpoint
// interval after it and is not the first since.
func (w *writer) add(r Record, a *ack) {
	l := w.l
	if l.signer != nil && w.sinceCP > 0 && (w.sinceCP >= l.cpEvery || r.Time.Sub(w.lastCP) >= l.cpInterval) {
		w.checkpoint(false)
	}
	w.batch = append(w.batch, r)
	w.acks = append(w.acks, a)
	w.sinceCP++
}

func (w *writer) checkpoint(closed bool) {
	now := w.l.now().UTC()
	w.batch = append(w.batch, Record{Kind: KindCheckpoint, Time: now, Checkpoint: &Checkpoint{Closed: closed}})
	w.acks = append(w.acks, nil)
	w.sinceCP, w.lastCP = 0, now
}

// opening starts the batch with the genesis (or, on a log that has records,
// the restart) of this writer, or with a checkpoint for a guest.
func (w *writer) opening() {
	l := w.l
	if l.signer == nil {
		return
	}
	if l.join {
		return
	}
	now := l.now().UTC()
	w.batch = append(w.batch, Record{Kind: KindGenesis, Time: now, Opening: &Opening{
		Instance: l.instance, CheckpointEvery: l.cpEvery, CheckpointIntervalMs: max(l.cpInterval.Milliseconds(), 1),
	}})
	w.acks = append(w.acks, nil)
	w.sinceCP, w.lastCP = 0, now
}

// run is the writer: it takes batches off the queue, adds drop notes and
// checkpoints, and appends them until they are stored.
func (l *Log) run(w *writer) {
	defer close(l.done)
	tick := time.NewTicker(min(l.cpInterval, time.Second))
	defer tick.Stop()
	l.readAnchor()
	flush := func(final bool) bool {
		if d := l.dropped.Load(); d > w.noted {
			l.logger.Warn("audit: decisions answered without a record (fail-open, queue full)",
				slog.Uint64("dropped", d-w.noted), slog.Uint64("dropped_total", d))
			w.add(Record{Kind: KindDrop, Time: l.now().UTC(), Drop: &Drop{Count: d - w.noted, Since: w.dropsAt.UTC()}}, nil)
			w.noted, w.dropsAt = d, l.now()
		}
		switch {
		case l.signer == nil:
		case l.join:
			// A guest signs the head before and after each of its
			// batches, so the owner's cadence holds whatever it counts.
			if len(w.batch) > 0 {
				w.checkpoint(final && l.joinClosed)
				w.batch = append(w.batch[len(w.batch)-1:], w.batch[:len(w.batch)-1]...)
				w.acks = append(w.acks[len(w.acks)-1:], w.acks[:len(w.acks)-1]...)
				w.checkpoint(final && l.joinClosed)
			} else if final && l.joinClosed {
				w.checkpoint(true)
			}
		case final:
			w.checkpoint(true)
		case w.sinceCP > 0 && (w.sinceCP >= l.cpEvery || l.now().Sub(w.lastCP) >= l.cpInterval):
			w.checkpoint(false)
		}
		if len(w.batch) == 0 {
			return true
		}
		if !l.write(w.batch) {
			return false
		}
		l.putAnchor()
		for i, a := range w.acks {
			if a != nil {
				a.stored()
			}
			w.acks[i] = nil
		}
		w.batch, w.acks = w.batch[:0], w.acks[:0]
		return true
	}
	// lost fails every record not written: the batch and what is queued.
	lost := func(err error) {
		n := len(w.batch)
		for _, a := range w.acks {
			if a != nil {
				a.fail(err)
			}
		}
		w.batch, w.acks = w.batch[:0], w.acks[:0]
		for {
			select {
			case it := <-l.queue:
				n++
				if it.ack != nil {
					it.ack.fail(err)
				}
				continue
			default:
			}
			break
		}
		l.unsaved.Add(int64(n))
	}
	// stopped: the writer gave up (Close deadline) or halted; it fails
	// whatever arrives until Close.
	stopped := func() {
		err := l.haltErr()
		if err == nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(l.runCtx))
		}
		lost(err)
		if l.halted.Load() == nil {
			return // aborted by Close
		}
		for {
			select {
			case it := <-l.queue:
				l.unsaved.Add(1)
				if it.ack != nil {
					it.ack.fail(err)
				}
			case <-l.stop:
				lost(err)
				return
			}
		}
	}
	if l.halted.Load() != nil { // the anchor check refused the log
		stopped()
		return
	}
	for {
		select {
		case it := <-l.queue:
			w.add(l.prepare(&it), it.ack)
			l.fill(w)
		case <-tick.C:
			l.putAnchor()
		case <-l.stop:
			for {
				l.fill(w)
				if len(w.batch) == 0 {
					break
				}
				if !flush(false) {
					stopped()
					return
				}
			}
			if !flush(true) {
				stopped()
			}
			return
		}
		wrote := len(w.batch)
		if !flush(false) {
			stopped()
			return
		}
		if wrote > 0 && wrote < l.batchSize && l.syncDelay > 0 && !l.durable {
			l.linger()
		}
	}
}

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

// fill moves queued records into the batch without waiting.
func (l *Log) fill(w *writer) {
	for len(w.batch) < l.batchSize {
		select {
		case it := <-l.queue:
			w.add(l.prepare(&it), it.ack)
		default:
			return
		}
	}
}

// write appends the batch, retrying with backoff until it is stored, the
// log is aborted, or the sink shows the head moved backwards (the writer
// then halts). It reports whether the batch was stored.
func (l *Log) write(batch []Record) bool {
	b := NewBatch(l.signer, batch...)
	if l.head.Hash != "" {
		b.requireFloor(l.head)
	}
	backoff := 10 * time.Millisecond
	var lastLog time.Time
	for {
		err := l.sink.Append(l.runCtx, b)
		if err == nil {
			if l.sinkDown.Swap(false) {
				l.logger.Info("audit: sink recovered")
			}
			l.head = b.next
			if b.anchor != nil {
				l.unanchored = b.anchor
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
		if errors.Is(err, ErrRewound) {
			l.halted.Store(&err)
			l.logger.Error("audit: the log's head moved backwards or the log was replaced under the writer; "+
				"refusing to continue: every decision is denied (AUDIT_UNAVAILABLE) until an operator restarts the server",
				slog.String("error", err.Error()), slog.Uint64("last_seq", l.head.Seq), slog.String("last_hash", l.head.Hash))
			return false
		}
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

// readAnchor makes the anchored head the floor of the first append: a log
// that ends before it was cut, and the writer halts rather than continue it.
func (l *Log) readAnchor() {
	if l.anchor == nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.runCtx, 5*time.Second)
	defer cancel()
	h, ok, err := l.anchor.Last(ctx)
	if err != nil {
		l.anchorErrs.Add(1)
		l.logger.Error("audit: cannot read the anchor; the log's end is not checked against it", slog.String("error", err.Error()))
		return
	}
	if !ok {
		return
	}
	l.head = Head{Seq: h.Seq, Hash: h.Hash}
	l.anchored.Store(h.Seq)
	// A file log can also show that the anchored record is still the one
	// at its place (a log replaced by a longer one passes the head check).
	if fs, ok := l.sink.(interface {
		hashAt(seq uint64) (string, bool, error)
	}); ok {
		hash, found, err := fs.hashAt(h.Seq)
		switch {
		case err != nil:
			l.logger.Error("audit: cannot read the anchored record back", slog.String("error", err.Error()))
		case !found || hash != h.Hash:
			err := fmt.Errorf("%w: the record at the anchored seq %d is missing or differs (%.12s…, anchored %.12s…)", ErrRewound, h.Seq, hash, h.Hash)
			l.halted.Store(&err)
			l.logger.Error("audit: the log does not hold its anchored head; refusing to continue it: every decision is denied (AUDIT_UNAVAILABLE) until an operator restarts the server",
				slog.String("error", err.Error()))
		}
	}
}

// putAnchor stores the last checkpoint written in the anchor.
func (l *Log) putAnchor() {
	if l.anchor == nil || l.unanchored == nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.runCtx, 5*time.Second)
	defer cancel()
	if err := l.anchor.Put(ctx, *l.unanchored); err != nil {
		if l.anchorErrs.Add(1) == 1 || l.anchorErrs.Load()%100 == 0 {
			l.logger.Error("audit: anchor write failed; retrying with the next checkpoint", slog.String("error", err.Error()),
				slog.Uint64("anchor_errors", l.anchorErrs.Load()))
		}
		return
	}
	l.anchored.Store(l.unanchored.Seq)
	l.unanchored = nil
}
