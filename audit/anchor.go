package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
)

// AnchorHead is a checkpoint written outside the log: the checkpoint record
// (Seq, the hash of its line) and what it signs, so that a log cut after
// the fact is caught by comparing it with an anchor kept elsewhere
// ([VerifyOptions].Anchor).
type AnchorHead struct {
	Seq    uint64    `json:"seq"`  // the checkpoint record's sequence number
	Hash   string    `json:"hash"` // the hash of its line
	Count  uint64    `json:"count"`
	Head   string    `json:"head"`
	Time   time.Time `json:"time"`
	KeyID  string    `json:"keyId"`
	Sig    []byte    `json:"sig"`
	Closed bool      `json:"closed,omitempty"`
}

// Verify checks the anchor's checkpoint signature with one of keys.
func (a *AnchorHead) Verify(keys ...ed25519.PublicKey) error {
	if a.Seq != a.Count+1 {
		return fmt.Errorf("anchor at seq %d signs %d records: %w", a.Seq, a.Count, ErrMalformed)
	}
	t := a.Time
	for _, k := range keys {
		if KeyID(k) == a.KeyID || legacyKeyID(k) == a.KeyID {
			if !ed25519.Verify(k, checkpointMessage(a.Count, a.Head, t, a.Closed), a.Sig) {
				return fmt.Errorf("anchor at seq %d: %w", a.Seq, ErrBadSignature)
			}
			return nil
		}
	}
	return fmt.Errorf("anchor at seq %d, key id %q: %w", a.Seq, a.KeyID, ErrUnknownKey)
}

// Anchor keeps the latest checkpoint of a log somewhere else than the log.
type Anchor interface {
	// Put stores h as the latest anchored head.
	Put(ctx context.Context, h AnchorHead) error
	// Last returns the latest anchored head, and false when there is none.
	Last(ctx context.Context) (AnchorHead, bool, error)
}

// FileAnchor appends each anchored head to a JSON-lines file (fsynced); the
// last line is the latest. Keep it on another volume, or another machine,
// than the log.
type FileAnchor struct{ path string }

var _ Anchor = (*FileAnchor)(nil)

// NewFileAnchor anchors to the file at path (created on the first Put).
func NewFileAnchor(path string) *FileAnchor { return &FileAnchor{path: path} }

// Put implements [Anchor].
func (a *FileAnchor) Put(_ context.Context, h AnchorHead) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.path), 0o750); err != nil {
		return fmt.Errorf("audit anchor: %w", err)
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit anchor: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("audit anchor: %w", err)
	}
	return nil
}

// Last implements [Anchor].
func (a *FileAnchor) Last(context.Context) (AnchorHead, bool, error) {
	st, err := os.Stat(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return AnchorHead{}, false, nil
	}
	if err != nil {
		return AnchorHead{}, false, fmt.Errorf("audit anchor: %w", err)
	}
	line, _, err := lastLine(a.path, st.Size())
	if err != nil {
		return AnchorHead{}, false, fmt.Errorf("audit anchor: %w", err)
	}
	if line == nil {
		return AnchorHead{}, false, nil
	}
	var h AnchorHead
	if err := json.Unmarshal(line, &h); err != nil {
		return AnchorHead{}, false, fmt.Errorf("audit anchor %s: %w: %v", a.path, ErrMalformed, err)
	}
	return h, true, nil
}

// DefaultAnchorPrefix starts the Redis key of an instance's anchor.
const DefaultAnchorPrefix = "chaperone:audit-anchor:"

// RedisAnchor keeps the latest anchored head in a Redis key; a head is only
// replaced by one with a higher sequence number.
type RedisAnchor struct {
	rdb redis.UniversalClient
	key string
}

var _ Anchor = (*RedisAnchor)(nil)

// NewRedisAnchor anchors to key through rdb (the caller's client).
func NewRedisAnchor(rdb redis.UniversalClient, key string) *RedisAnchor {
	return &RedisAnchor{rdb: rdb, key: key}
}

// putAnchorScript: KEYS[1] key; ARGV[1] seq; ARGV[2] JSON. Sets the key
// unless it holds a head with a higher seq.
var putAnchorScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, h = pcall(cjson.decode, cur)
  if ok and type(h) == 'table' and tonumber(h['seq']) and tonumber(h['seq']) > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// Put implements [Anchor].
func (a *RedisAnchor) Put(ctx context.Context, h AnchorHead) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := putAnchorScript.Run(ctx, a.rdb, []string{a.key}, h.Seq, b).Err(); err != nil {
		return fmt.Errorf("audit anchor %s: %w", a.key, err)
	}
	return nil
}

// Last implements [Anchor].
func (a *RedisAnchor) Last(ctx context.Context) (AnchorHead, bool, error) {
	b, err := a.rdb.Get(ctx, a.key).Bytes()
	if errors.Is(err, redis.Nil) {
		return AnchorHead{}, false, nil
	}
	if err != nil {
		return AnchorHead{}, false, fmt.Errorf("audit anchor %s: %w", a.key, err)
	}
	var h AnchorHead
	if err := json.Unmarshal(b, &h); err != nil {
		return AnchorHead{}, false, fmt.Errorf("audit anchor %s: %w: %v", a.key, ErrMalformed, err)
	}
	return h, true, nil
}
