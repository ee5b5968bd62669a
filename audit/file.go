package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// DefaultMaxFileSize is the size at which a [FileSink] rotates its file.
const DefaultMaxFileSize = 256 << 20

// FileSink appends records to a JSON-lines file: one record per line, one
// write and one fsync per batch. When the file passes its size limit it is
// renamed to PATH.<first seq, 20 digits> and a new PATH is started; the
// chain continues from the last record of the rotated file. Appends take an
// advisory lock on PATH.lock, so another process (chaperone audit review)
// may append to the same log while the server runs.
type FileSink struct {
	path    string
	maxSize int64
	logger  *slog.Logger

	lock  *os.File // PATH.lock
	f     *os.File // PATH, O_APPEND
	size  int64    // size of f after our last append
	head  Head
	fresh bool   // head and size are what we last wrote to f
	wrote bool   // an append of ours succeeded: PATH may not be replaced under us
	buf   []byte // the lines of the last append, reused
}

// maxKeptBuffer is the largest append buffer a FileSink keeps for the next
// append.
const maxKeptBuffer = 8 << 20

var _ Sink = (*FileSink)(nil)

// FileOption configures a [FileSink].
type FileOption func(*FileSink)

// WithMaxFileSize sets the size (bytes) at which the file rotates; 0 or less
// never rotates.
func WithMaxFileSize(n int64) FileOption { return func(s *FileSink) { s.maxSize = n } }

// WithFileLogger sets where the sink reports repairs (a torn last line).
func WithFileLogger(l *slog.Logger) FileOption { return func(s *FileSink) { s.logger = l } }

// OpenFile opens (creating it and its directory) the log at path.
func OpenFile(path string, opts ...FileOption) (*FileSink, error) {
	s := &FileSink{path: path, maxSize: DefaultMaxFileSize, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit log directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit log lock: %w", err)
	}
	s.lock = lock
	if err := s.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.fresh = f, false
	return nil
}

// Append implements [Sink].
func (s *FileSink) Append(ctx context.Context, b *Batch) error {
	if err := lockFile(ctx, s.lock); err != nil {
		return fmt.Errorf("lock audit log: %w", err)
	}
	defer unlockFile(s.lock)

	if !sameFile(s.f, s.path) { // rotated by another writer, or replaced or deleted
		if s.wrote && !s.rotatedAway() {
			return fmt.Errorf("%w: %s was replaced or deleted", ErrRewound, s.path)
		}
		if err := s.open(); err != nil {
			return err
		}
	}
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat audit log: %w", err)
	}
	if !s.fresh || st.Size() != s.size {
		if s.head, s.size, err = s.readHead(st.Size()); err != nil {
			return err
		}
		s.fresh = true
	}
	buf, _, next, err := b.sealInto(s.buf[:0], s.head)
	if err != nil {
		return err
	}
	if cap(buf) <= maxKeptBuffer {
		s.buf = buf
	}
	n, err := s.f.Write(buf)
	if err != nil {
		s.fresh = false // a torn line is repaired on the next append
		return fmt.Errorf("write audit log: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		s.fresh = false
		return fmt.Errorf("fsync audit log: %w", err)
	}
	s.size += int64(n)
	s.head, s.wrote = next, true
	if s.maxSize > 0 && s.size >= s.maxSize {
		if err := s.rotate(); err != nil {
			return err // the records are stored; the next append retries the rotation
		}
	}
	return nil
}

// rotatedAway reports whether the file this sink has open is now the
// rotated files of the log (another writer rotated it; the head read from
// PATH must then still not be behind ours).
func (s *FileSink) rotatedAway() bool {
	segs, err := segments(s.path)
	if err != nil {
		return false
	}
	a, err := s.f.Stat()
	if err != nil {
		return false
	}
	for i := len(segs) - 1; i >= 0; i-- {
		if b, err := os.Stat(segs[i]); err == nil && os.SameFile(a, b) {
			return true
		}
	}
	return false
}

// rotate renames the full file to PATH.<first seq> and starts a new one.
func (s *FileSink) rotate() error {
	first, err := firstSeq(s.path)
	if err != nil {
		return err
	}
	seg := segmentName(s.path, first)
	if err := os.Rename(s.path, seg); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return err
	}
	head := s.head
	if err := s.open(); err != nil {
		return err
	}
	s.head, s.size, s.fresh = head, 0, true
	return nil
}

func segmentName(path string, first uint64) string {
	return fmt.Sprintf("%s.%020d", path, first)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("fsync audit log directory: %w", err)
	}
	return nil
}

// readHead finds the last record of the chain: in PATH, or in the newest
// rotated file when PATH is empty. A torn last line (a crash during a
// write) is cut off and reported. It returns the head and PATH's size.
func (s *FileSink) readHead(size int64) (Head, int64, error) {
	if size > 0 {
		last, keep, err := lastLine(s.path, size)
		if err != nil {
			return Head{}, 0, err
		}
		if keep != size {
			if err := os.Truncate(s.path, keep); err != nil {
				return Head{}, 0, fmt.Errorf("cut torn line off audit log: %w", err)
			}
			s.logger.Warn("audit log: cut off a torn last line (interrupted write)",
				slog.String("path", s.path), slog.Int64("bytes", size-keep))
			size = keep
		}
		if last != nil {
			h, err := headOf(last)
			return h, size, err
		}
	}
	segs, err := segments(s.path)
	if err != nil {
		return Head{}, 0, err
	}
	if len(segs) == 0 {
		return GenesisHead, size, nil
	}
	seg := segs[len(segs)-1]
	st, err := os.Stat(seg)
	if err != nil {
		return Head{}, 0, err
	}
	last, _, err := lastLine(seg, st.Size())
	if err != nil || last == nil {
		return Head{}, 0, fmt.Errorf("audit log segment %s has no last record: %v", seg, err)
	}
	h, err := headOf(last)
	return h, size, err
}

func headOf(line []byte) (Head, error) {
	r, hash, err := unseal(line)
	if err != nil {
		return Head{}, fmt.Errorf("last record of the audit log: %w", err)
	}
	return Head{Seq: r.Seq, Hash: hash}, nil
}

// lastLine returns the last complete line of the file and the size up to
// and including its newline (less than size when a torn line follows).
func lastLine(path string, size int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	const chunk = 64 << 10
	var tail []byte
	for off := size; off > 0; {
		n := min(int64(chunk), off)
		off -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		tail = append(buf, tail...)
		end := bytes.LastIndexByte(tail, '\n')
		if end < 0 {
			continue
		}
		start := bytes.LastIndexByte(tail[:end], '\n')
		if start < 0 && off > 0 {
			continue // the line starts before this chunk
		}
		return tail[start+1 : end], off + int64(end) + 1, nil
	}
	return nil, 0, nil // no complete line at all
}

func firstSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil {
		return 0, fmt.Errorf("first record of %s: %w", path, err)
	}
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return 0, fmt.Errorf("first record of %s: %w", path, err)
	}
	return r.Seq, nil
}

// segments lists the rotated files of the log at path, oldest first.
func segments(path string) ([]string, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)+"."
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, base) {
			continue
		}
		if _, err := strconv.ParseUint(n[len(base):], 10, 64); err != nil || len(n)-len(base) != 20 {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	slices.Sort(out) // zero-padded: lexical order is sequence order
	return out, nil
}

// Close implements [Sink].
func (s *FileSink) Close() error {
	return errors.Join(s.f.Close(), s.lock.Close())
}

// ReadFiles yields the lines of the log at path: its rotated files, oldest
// first, then path itself. A last line without its newline is yielded
// marked [Entry].Torn (verification accepts it only as an open tail).
func ReadFiles(path string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		segs, err := segments(path)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		for _, p := range append(segs, path) {
			if !readFile(p, yield) {
				return
			}
		}
	}
}

func readFile(path string, yield func(Entry, error) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return yield(Entry{}, fmt.Errorf("read audit log: %w", err))
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			torn := line[len(line)-1] != '\n'
			if !yield(Entry{Where: path + ":" + strconv.Itoa(n), Line: line, Torn: torn}, nil) {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return yield(Entry{}, fmt.Errorf("read audit log: %w", err))
		}
	}
}

// hashAt returns the hash of the record numbered seq in the log (its rotated
// files and PATH), and false when the log has no such record. It reads the
// one file that can hold it.
func (s *FileSink) hashAt(seq uint64) (string, bool, error) {
	segs, err := segments(s.path)
	if err != nil {
		return "", false, err
	}
	file := s.path
	for i := len(segs) - 1; i >= 0; i-- {
		first, err := strconv.ParseUint(segs[i][len(s.path)+1:], 10, 64)
		if err == nil && first <= seq {
			// PATH holds it only if PATH starts after this segment's records.
			if f, err := firstSeq(s.path); err == nil && f <= seq {
				break
			}
			file = segs[i]
			break
		}
	}
	var (
		hash  string
		found bool
	)
	prefix := []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `,`)
	readFile(file, func(e Entry, err error) bool {
		if err != nil || !bytes.HasPrefix(e.Line, prefix) {
			return err == nil
		}
		if _, h, uerr := unseal(e.Line); uerr == nil {
			hash, found = h, true
		}
		return false
	})
	return hash, found, nil
}
