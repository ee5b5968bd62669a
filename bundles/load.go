package bundles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
)

// ErrNotModified is returned by a [Source] whose bundle has not changed
// since its last Fetch.
var ErrNotModified = errors.New("bundle not modified")

// Source is where a [Loader] gets bundles from.
type Source interface {
	// Fetch returns the bundle, or ErrNotModified when it has not changed
	// since the previous Fetch (successful or not, so that a bad bundle is
	// refused once, not on every poll).
	Fetch(ctx context.Context) (*Archive, error)
	// String names the source in logs and status.
	String() string
}

// FileSource reads a bundle archive (tar.gz) from a file. It notices a
// change by modification time and size, then by content.
func FileSource(path string) Source { return &fileSource{path: path} }

type fileSource struct {
	path    string
	mu      sync.Mutex
	modTime time.Time
	size    int64
	sum     [32]byte
	fetched bool
}

func (s *fileSource) String() string { return s.path }

// racyWindow is how recent a modification time must be for a bundle file
// of unchanged size and time to be hashed again rather than trusted as
// unchanged.
const racyWindow = 2 * time.Second

func (s *fileSource) Fetch(context.Context) (*Archive, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.path)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", s.path, err)
	}
	// Size and modification time tell a change cheaply, but not a file
	// replaced by another of the same size within the file system's clock
	// tick (a re-signed bundle of the same policies is exactly that): a
	// file modified in the last racyWindow is read and hashed again.
	if s.fetched && st.ModTime().Equal(s.modTime) && st.Size() == s.size && time.Since(st.ModTime()) > racyWindow {
		return nil, ErrNotModified
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", s.path, err)
	}
	sum := sha256.Sum256(data)
	unchanged := s.fetched && sum == s.sum
	s.modTime, s.size, s.sum, s.fetched = st.ModTime(), st.Size(), sum, true
	if unchanged {
		return nil, ErrNotModified
	}
	a, err := ReadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	return a, nil
}

// DirSource reads a policy directory or an unpacked bundle ([ReadDir]).
// It notices a change by the paths, sizes and modification times of the
// directory's files. name is how the directory is named in logs.
func DirSource(name string, fsys fs.FS) Source { return &dirSource{name: name, fsys: fsys} }

type dirSource struct {
	name    string
	fsys    fs.FS
	mu      sync.Mutex
	last    [32]byte
	fetched bool
}

func (s *dirSource) String() string { return s.name }

func (s *dirSource) Fetch(context.Context) (*Archive, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp, err := fingerprint(s.fsys)
	if err != nil {
		return nil, fmt.Errorf("read policy directory %s: %w", s.name, err)
	}
	if s.fetched && fp == s.last {
		return nil, ErrNotModified
	}
	s.last, s.fetched = fp, true
	a, err := ReadDir(s.fsys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return a, nil
}

// fingerprint hashes the path, size and modification time of every file.
func fingerprint(fsys fs.FS) ([32]byte, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// URLSource polls a bundle archive over HTTP(S) with If-None-Match, so an
// unchanged bundle costs a 304. client may be nil (a client with a 30s
// timeout is used).
func URLSource(url string, client *http.Client) Source {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &urlSource{url: url, client: client}
}

type urlSource struct {
	url    string
	client *http.Client
	mu     sync.Mutex
	etag   string
}

func (s *urlSource) String() string { return s.url }

func (s *urlSource) Fetch(ctx context.Context) (*Archive, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch bundle: %w", err)
	}
	if s.etag != "" {
		req.Header.Set("If-None-Match", s.etag)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, ErrNotModified
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("fetch bundle %s: HTTP %s", s.url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTotalSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch bundle %s: %w", s.url, err)
	}
	s.etag = resp.Header.Get("ETag")
	a, err := ReadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.url, err)
	}
	return a, nil
}

// Activator is what a [Loader] hands compiled bundles to; [*engine.Engine]
// is one.
type Activator interface {
	Activate(b *engine.Bundle)
}

var _ Activator = (*engine.Engine)(nil)

// Status is what a [Loader] reports: the active bundle and the last load
// error.
type Status struct {
	Revision string    `json:"revision"`
	Name     string    `json:"name"`
	Digest   string    `json:"digest"`
	Signers  []string  `json:"signers,omitempty"`
	LoadedAt time.Time `json:"loadedAt"`
	// LastError is why the last attempt failed; empty when it succeeded.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Failures counts the bundles refused since the loader started.
	Failures uint64 `json:"failures"`
	Source   string `json:"source"`
	// Downgrade is set when the active bundle's revision is not newer
	// than the one it replaced and it was activated deliberately
	// ([WithAllowDowngrade]).
	Downgrade bool `json:"downgrade,omitempty"`
}

// ActivationRecorder is told of every bundle about to become active: next
// is the status it will have, previous the status of the bundle it
// replaces (no revision at the first load). It must return only once the
// activation is recorded; an error refuses the bundle (the active one
// keeps deciding), so no bundle decides without its record. The loader
// calls activated once the bundle is active.
type ActivationRecorder func(ctx context.Context, next, previous Status) (activated func(), err error)

// Loader loads bundles from a [Source], verifies and compiles them off the
// hot path, and activates the good ones. A bad bundle (bad digest, missing
// signatures, compile error) is refused and logged, and the last good one
// keeps deciding. It is safe for concurrent use.
type Loader struct {
	target Activator
	source Source
	verify VerifyOptions
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex // one load at a time
	status  atomic.Pointer[Status]
	archive atomic.Pointer[Archive] // the active bundle's files
	record  ActivationRecorder
	// downgrade permits a bundle whose revision is not newer than the
	// active one.
	downgrade bool
}

// LoaderOption configures a [Loader].
type LoaderOption func(*Loader)

// WithTrustedKeys makes the loader activate only bundles that at least
// min distinct keys among keys signed (min < 1 means 1). Without this
// option, built bundles are checked against their digests and policy
// directories without a bundle manifest are accepted as they are.
func WithTrustedKeys(keys []PublicKey, min int) LoaderOption {
	return func(l *Loader) { l.verify = VerifyOptions{Keys: keys, MinSignatures: min} }
}

// WithLoaderLogger sets the logger of load events and errors.
func WithLoaderLogger(logger *slog.Logger) LoaderOption {
	return func(l *Loader) { l.logger = logger }
}

// WithActivationRecorder records every activation with r before it is
// made (the audit chain: see [ActivationRecorder]).
func WithActivationRecorder(r ActivationRecorder) LoaderOption {
	return func(l *Loader) { l.record = r }
}

// WithAllowDowngrade permits a bundle whose revision is not newer than the
// active one ([CompareRevisions]); it is activated with
// [Status].Downgrade set, and recorded so. Without it such a bundle is
// refused with a [*DowngradeError], however validly it is signed.
func WithAllowDowngrade(on bool) LoaderOption { return func(l *Loader) { l.downgrade = on } }

// WithLoaderClock sets the clock of the status timestamps.
func WithLoaderClock(now func() time.Time) LoaderOption {
	return func(l *Loader) { l.now = now }
}

// NewLoader returns a loader that activates bundles from source on target.
// Nothing is loaded until [Loader.Load] or [Loader.Run].
func NewLoader(target Activator, source Source, opts ...LoaderOption) *Loader {
	l := &Loader{
		target: target,
		source: source,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:    time.Now,
	}
	for _, o := range opts {
		o(l)
	}
	l.status.Store(&Status{Source: source.String()})
	return l
}

// Status returns the loader's status.
func (l *Loader) Status() Status {
	s := *l.status.Load()
	s.Signers = append([]string(nil), s.Signers...)
	return s
}

// Archive returns the files of the active bundle (sources, data, suites),
// or nil before the first activation. Callers must not modify it.
func (l *Loader) Archive() *Archive { return l.archive.Load() }

// Load fetches the bundle once and activates it when it is new and good.
// An unchanged source is not an error. A bad bundle is refused: the error
// is logged, recorded in the status and returned, and the active bundle
// stays.
func (l *Loader) Load(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, err := l.source.Fetch(ctx)
	if errors.Is(err, ErrNotModified) {
		return nil
	}
	if err == nil {
		err = l.activate(ctx, a)
	}
	if errors.Is(err, errSameBundle) {
		return nil
	}
	if err != nil {
		l.logger.LogAttrs(ctx, slog.LevelError, "bundle refused; the active bundle keeps deciding",
			slog.String("source", l.source.String()), slog.String("error", err.Error()),
			slog.String("active_revision", l.status.Load().Revision))
		st := *l.status.Load()
		st.LastError, st.LastErrorAt = err.Error(), l.now()
		st.Failures++
		l.status.Store(&st)
		return err
	}
	st := l.status.Load()
	l.logger.LogAttrs(ctx, slog.LevelInfo, "bundle activated",
		slog.String("source", l.source.String()), slog.String("revision", st.Revision),
		slog.String("digest", st.Digest), slog.Any("signers", st.Signers))
	return nil
}

// errSameBundle is a fetched bundle identical to the active one.
var errSameBundle = errors.New("the active bundle")

// activate verifies, compiles, checks the revision of, records and
// activates a.
//
// The revision must be newer than the active bundle's, or the bundle is a
// rollback and refused unless downgrades are allowed. An unbuilt policy
// directory may keep the active revision (a directory being edited in
// development reloads under the same revision); a built bundle may not.
func (l *Loader) activate(ctx context.Context, a *Archive) error {
	verified := &Verified{Digest: a.Digest()}
	if a.Built() || len(l.verify.Keys) > 0 {
		v, err := Verify(a, l.verify)
		if err != nil {
			return err
		}
		verified = v
	}
	b, err := a.Compile()
	if err != nil {
		return err
	}
	prev := l.status.Load()
	if prev.Revision != "" && verified.Digest == prev.Digest {
		return errSameBundle
	}
	downgrade := false
	if prev.Revision != "" {
		c := CompareRevisions(b.Revision(), prev.Revision)
		if c < 0 || (c == 0 && a.Built()) {
			if !l.downgrade {
				return &DowngradeError{Revision: b.Revision(), Active: prev.Revision}
			}
			downgrade = true
			l.logger.LogAttrs(ctx, slog.LevelWarn, "bundle downgrade allowed",
				slog.String("revision", b.Revision()), slog.String("active_revision", prev.Revision))
		}
	}
	next := &Status{
		Revision:  b.Revision(),
		Name:      b.Manifest().Name,
		Digest:    verified.Digest,
		Signers:   verified.Signers,
		LoadedAt:  l.now(),
		Source:    l.source.String(),
		Failures:  prev.Failures,
		Downgrade: downgrade,
	}
	activated := func() {}
	if l.record != nil {
		var err error
		if activated, err = l.record(ctx, *next, *prev); err != nil {
			return fmt.Errorf("record the activation: %w", err)
		}
	}
	l.target.Activate(b)
	l.status.Store(next)
	l.archive.Store(a)
	activated()
	return nil
}

// Run calls [Loader.Load] every interval until ctx is done. Errors are
// logged and recorded in the status, not returned.
func (l *Loader) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = l.Load(ctx)
		}
	}
}
