package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// DefaultTimeout is how long a call may take unless [WithTimeout] says
// otherwise.
const DefaultTimeout = time.Second

// MaxBatch is the most requests the server takes in one BatchCheck.
const MaxBatch = 1000

// Client asks a Chaperone PDP for decisions. It is safe for concurrent
// use.
type Client struct {
	rpc     chaperonev1connect.DecisionServiceClient
	timeout time.Duration
	now     func() time.Time
	logger  *slog.Logger
	cache   *cache // nil: no cache
	maxTTL  time.Duration
	batch   *batcher
	bufs    bufPool
	stats   counters
}

// cacheKey is a request's key in the cache; set false when the answer is
// not to be kept.
type cacheKey struct {
	s   string
	set bool
}

// config is what the options set.
type config struct {
	httpClient *http.Client
	timeout    time.Duration
	now        func() time.Time
	cacheSize  int
	maxTTL     time.Duration
	header     http.Header
	window     time.Duration
	maxBatch   int
	logger     *slog.Logger
	grpc       bool
	connect    []connect.ClientOption
}

// Option configures a [Client].
type Option func(*config)

// WithHTTPClient sends every call through hc, e.g. one whose transport
// presents a client certificate (mTLS). The default is a client of its own
// with pooled connections.
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.httpClient = hc } }

// WithTimeout bounds each call (a Check, a BatchCheck, a coalesced batch)
// to d, [DefaultTimeout] when not set; a call that takes longer is a DENY
// with [ReasonUnavailable]. The caller's context may end it sooner.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithCache keeps up to maxEntries decisions the server says are reusable
// (see the package documentation); 0, the default, keeps none.
func WithCache(maxEntries int) Option { return func(c *config) { c.cacheSize = maxEntries } }

// WithMaxTTL keeps no answer longer than d, whatever cacheTtl the server
// gives (0, the default: as long as the server says).
func WithMaxTTL(d time.Duration) Option { return func(c *config) { c.maxTTL = d } }

// WithClock sets the clock cached answers expire by (time.Now by default).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithHeader adds a header to every call, e.g. "Authorization" with a
// bearer token the server's callers configuration accepts. Headers with
// the same key accumulate.
func WithHeader(key, value string) Option {
	return func(c *config) {
		if c.header == nil {
			c.header = http.Header{}
		}
		c.header.Add(key, value)
	}
}

// WithBearerToken authenticates every call with token
// ("Authorization: Bearer token").
func WithBearerToken(token string) Option { return WithHeader("Authorization", "Bearer "+token) }

// WithBatchWindow coalesces Checks that miss the cache and arrive within d
// of the first into one BatchCheck; 0, the default, sends each Check on
// its own.
func WithBatchWindow(d time.Duration) Option { return func(c *config) { c.window = d } }

// WithMaxBatch caps a coalesced batch at n requests (1 to [MaxBatch],
// [MaxBatch] by default); a full batch is sent without waiting for the
// end of its window.
func WithMaxBatch(n int) Option { return func(c *config) { c.maxBatch = n } }

// WithLogger logs failed calls (at warn, without request contents) to l.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithGRPC speaks gRPC instead of the Connect protocol (the server
// answers both on one port; gRPC needs HTTP/2, so hc of
// [WithHTTPClient] must speak it).
func WithGRPC() Option { return func(c *config) { c.grpc = true } }

// WithConnectOptions passes further options to the Connect client
// (interceptors, compression).
func WithConnectOptions(opts ...connect.ClientOption) Option {
	return func(c *config) { c.connect = append(c.connect, opts...) }
}

// New returns a client of the PDP at baseURL ("http://127.0.0.1:8787").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("pdp url %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pdp url %q: want http:// or https:// and a host", baseURL)
	}
	cfg := config{timeout: DefaultTimeout, now: time.Now, maxBatch: MaxBatch}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("timeout %s: want more than 0", cfg.timeout)
	case cfg.cacheSize < 0:
		return nil, fmt.Errorf("cache size %d: want 0 or more", cfg.cacheSize)
	case cfg.maxTTL < 0:
		return nil, fmt.Errorf("max ttl %s: want 0 or more", cfg.maxTTL)
	case cfg.window < 0:
		return nil, fmt.Errorf("batch window %s: want 0 or more", cfg.window)
	case cfg.maxBatch < 1 || cfg.maxBatch > MaxBatch:
		return nil, fmt.Errorf("max batch %d: want 1 to %d", cfg.maxBatch, MaxBatch)
	case cfg.now == nil:
		return nil, errors.New("clock: want a function")
	}
	hc := cfg.httpClient
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		hc = &http.Client{Transport: t}
	}
	logger := cfg.logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	copts := append([]connect.ClientOption(nil), cfg.connect...)
	if cfg.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	if len(cfg.header) > 0 {
		copts = append(copts, connect.WithInterceptors(headerInterceptor(cfg.header.Clone())))
	}
	c := &Client{
		rpc:     chaperonev1connect.NewDecisionServiceClient(hc, baseURL, copts...),
		timeout: cfg.timeout,
		maxTTL:  cfg.maxTTL,
		now:     cfg.now,
		logger:  logger,
	}
	if cfg.cacheSize > 0 {
		c.cache = newCache(cfg.cacheSize)
	}
	if cfg.window > 0 {
		c.batch = &batcher{client: c, window: cfg.window, max: cfg.maxBatch}
	}
	return c, nil
}

// headerInterceptor sets h on every request.
func headerInterceptor(h http.Header) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			for k, vs := range h {
				req.Header()[k] = append(req.Header()[k], vs...)
			}
			return next(ctx, req)
		}
	}
}

// Check decides req. It never fails: an answer the client could not get
// or could not trust is a DENY with a reason code (see the package
// documentation). The response may come from the cache; the caller may
// modify it.
func (c *Client) Check(ctx context.Context, req *chaperonev1.CheckRequest) *chaperonev1.CheckResponse {
	if req == nil {
		return deny(ReasonInvalidRequest, "no request")
	}
	resp, key := c.lookup(req)
	if resp != nil {
		return resp
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.batch != nil {
		return c.batch.check(ctx, req, key)
	}
	return c.checkOne(ctx, req, key)
}

// lookup returns the cached answer to req, or nil and the key to keep
// its answer under.
func (c *Client) lookup(req *chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, cacheKey) {
	if c.cache == nil {
		return nil, cacheKey{}
	}
	b := c.bufs.get()
	defer c.bufs.put(b)
	var err error
	b.key, b.scratch, err = appendKey(b.key[:0], b.scratch, req)
	if err != nil {
		return deny(ReasonInvalidRequest, "request cannot be encoded"), cacheKey{}
	}
	if resp := c.cache.get(b.key, c.now()); resp != nil {
		c.stats.hits.Add(1)
		return resp, cacheKey{}
	}
	c.stats.misses.Add(1)
	return nil, cacheKey{string(b.key), true}
}

// checkOne sends one Check and keeps a cacheable answer under key (nil:
// not kept).
func (c *Client) checkOne(ctx context.Context, req *chaperonev1.CheckRequest, key cacheKey) *chaperonev1.CheckResponse {
	c.stats.checks.Add(1)
	res, err := c.rpc.Check(ctx, connect.NewRequest(req))
	if err != nil {
		return c.failed(ctx, "Check", err)
	}
	return c.accept(ctx, res.Msg, key)
}

// BatchCheck decides reqs and answers in the same order, one answer per
// request, with the fail-closed rule of [Client.Check] for each. Requests
// found in the cache are not sent; the rest go in BatchChecks of at most
// [MaxBatch], concurrently, each bounded by the timeout.
func (c *Client) BatchCheck(ctx context.Context, reqs []*chaperonev1.CheckRequest) []*chaperonev1.CheckResponse {
	out := make([]*chaperonev1.CheckResponse, len(reqs))
	keys := make([]cacheKey, len(reqs))
	var todo []int // indexes still to ask
	for i, r := range reqs {
		if r == nil {
			out[i] = deny(ReasonInvalidRequest, "no request")
			continue
		}
		resp, key := c.lookup(r)
		if resp != nil {
			out[i] = resp
			continue
		}
		keys[i] = key
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	done := make(chan struct{})
	chunks := 0
	for start := 0; start < len(todo); start += MaxBatch {
		idx := todo[start:min(start+MaxBatch, len(todo))]
		chunks++
		go func() {
			defer func() { done <- struct{}{} }()
			sub := make([]*chaperonev1.CheckRequest, len(idx))
			subKeys := make([]cacheKey, len(idx))
			for j, i := range idx {
				sub[j], subKeys[j] = reqs[i], keys[i]
			}
			for j, resp := range c.sendBatch(ctx, sub, subKeys) {
				out[idx[j]] = resp
			}
		}()
	}
	for range chunks {
		<-done
	}
	return out
}

// sendBatch sends reqs as one BatchCheck (a single request as a Check) and
// returns one answer per request, keeping the cacheable ones under keys.
// A batch refused as invalid input is split in halves and asked again
// (about 2·log2(n) more calls for one invalid request in n).
func (c *Client) sendBatch(ctx context.Context, reqs []*chaperonev1.CheckRequest, keys []cacheKey) []*chaperonev1.CheckResponse {
	out := make([]*chaperonev1.CheckResponse, len(reqs))
	if len(reqs) == 1 {
		out[0] = c.checkOne(ctx, reqs[0], keys[0])
		return out
	}
	c.stats.batches.Add(1)
	res, err := c.rpc.BatchCheck(ctx, connect.NewRequest(&chaperonev1.BatchCheckRequest{Requests: reqs}))
	if err != nil && refused(err) && ctx.Err() == nil {
		// One invalid request fails the whole batch: ask each half
		// again, down to the requests that are invalid on their own, so
		// that they do not deny the others.
		h := len(reqs) / 2
		var wg sync.WaitGroup
		wg.Go(func() { copy(out[:h], c.sendBatch(ctx, reqs[:h], keys[:h])) })
		copy(out[h:], c.sendBatch(ctx, reqs[h:], keys[h:]))
		wg.Wait()
		return out
	}
	if err != nil {
		resp := c.failed(ctx, "BatchCheck", err)
		for i := range out {
			out[i] = cloneDeny(resp)
		}
		return out
	}
	got := res.Msg.GetResponses()
	if len(got) != len(reqs) {
		c.stats.failures.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelWarn, "pdp answered a batch with the wrong number of decisions",
			slog.Int("want", len(reqs)), slog.Int("got", len(got)))
		for i := range out {
			out[i] = deny(ReasonBadResponse, fmt.Sprintf("the PDP answered %d requests with %d decisions", len(reqs), len(got)))
		}
		return out
	}
	for i, r := range got {
		out[i] = c.accept(ctx, r, keys[i])
	}
	return out
}

// accept returns the server's answer when it is a decision, keeping it
// under key when it may be reused, or the client's DENY when it is not.
func (c *Client) accept(ctx context.Context, resp *chaperonev1.CheckResponse, key cacheKey) *chaperonev1.CheckResponse {
	out, ok := trusted(resp)
	if !ok {
		c.stats.failures.Add(1)
		c.logger.LogAttrs(ctx, slog.LevelWarn, "pdp answered something that is not a decision; denying",
			slog.String("decision", resp.GetDecision().String()))
		return out
	}
	c.keep(key, out)
	return out
}

// keep caches resp under key when the server says it may be reused.
func (c *Client) keep(key cacheKey, resp *chaperonev1.CheckResponse) {
	if c.cache == nil || !key.set {
		return
	}
	if ttl, ok := cacheable(resp); ok {
		if c.maxTTL > 0 {
			ttl = min(ttl, c.maxTTL)
		}
		c.cache.put(key.s, snapshot(resp), c.now().Add(ttl))
	}
}

// failed turns a call error into a DENY and logs it.
func (c *Client) failed(ctx context.Context, method string, err error) *chaperonev1.CheckResponse {
	code := connect.CodeOf(err)
	c.stats.failures.Add(1)
	c.logger.LogAttrs(ctx, slog.LevelWarn, "pdp call failed; denying",
		slog.String("method", method), slog.String("code", code.String()), slog.String("error", err.Error()))
	switch {
	case refused(err):
		msg := "invalid request"
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Message() != "" {
			msg = ce.Message()
		}
		return deny(ReasonInvalidRequest, msg)
	case code == connect.CodeInvalidArgument:
		// Not from the server: the client could not read its answer.
		return deny(ReasonBadResponse, "the PDP's answer cannot be read")
	}
	return deny(ReasonUnavailable, "the PDP did not decide: "+code.String())
}

// refused says whether err is the server refusing the request as invalid
// input (rather than the client failing to read an answer).
func refused(err error) bool {
	return connect.CodeOf(err) == connect.CodeInvalidArgument && connect.IsWireError(err)
}

// Stats counts what a client did since it was made.
type Stats struct {
	Hits     uint64 // Checks (and BatchCheck entries) answered from the cache
	Misses   uint64 // lookups that found nothing reusable
	Checks   uint64 // Check calls sent
	Batches  uint64 // BatchCheck calls sent (coalesced or asked for)
	Failures uint64 // calls that failed and answers that were not a decision
}

type counters struct{ hits, misses, checks, batches, failures atomic.Uint64 }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(), Checks: c.stats.checks.Load(),
		Batches: c.stats.batches.Load(), Failures: c.stats.failures.Load(),
	}
}
