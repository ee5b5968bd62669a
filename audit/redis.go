package audit

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DefaultStreamPrefix starts the names of audit streams; each server
// instance appends to its own stream (prefix + instance name) so that
// replicas do not contend for one chain.
const DefaultStreamPrefix = "chaperone:audit:"

// RedisSink appends records to a Redis stream with XADD: one entry per
// record with fields seq, hash and rec (the line). A batch is appended by a
// script that first checks the stream's last hash is the head the batch was
// sealed on, so concurrent writers to one stream never fork the chain (the
// loser re-reads the head and seals again).
type RedisSink struct {
	rdb    redis.UniversalClient
	stream string
	head   Head
	fresh  bool
}

var _ Sink = (*RedisSink)(nil)

// ErrHeadMoved means another writer appended to the stream first.
var ErrHeadMoved = errors.New("audit stream head moved")

// NewRedisSink appends to stream through rdb. The client is the caller's;
// Close does not close it.
func NewRedisSink(rdb redis.UniversalClient, stream string) *RedisSink {
	return &RedisSink{rdb: rdb, stream: stream}
}

// appendScript: KEYS[1] stream; ARGV[1] expected head hash; then triples
// seq, hash, line. Returns the number appended or an error starting with
// HEADMOVED.
var appendScript = redis.NewScript(`
local cur = "` + Genesis + `"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local f = last[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'hash' then cur = f[i+1] end
  end
end
if cur ~= ARGV[1] then
  return redis.error_reply('HEADMOVED ' .. cur)
end
local n = 0
for i = 2, #ARGV, 3 do
  redis.call('XADD', KEYS[1], '*', 'seq', ARGV[i], 'hash', ARGV[i+1], 'rec', ARGV[i+2])
  n = n + 1
end
return n
`)

// Append implements [Sink].
func (s *RedisSink) Append(ctx context.Context, b *Batch) error {
	for attempt := 0; ; attempt++ {
		if !s.fresh {
			h, err := s.readHead(ctx)
			if err != nil {
				return err
			}
			s.head, s.fresh = h, true
		}
		sealed, next, err := b.Seal(s.head)
		if err != nil {
			return err
		}
		args := make([]any, 0, 1+3*len(sealed))
		args = append(args, s.head.Hash)
		for _, x := range sealed {
			args = append(args, strconv.FormatUint(x.Seq, 10), x.Hash, x.Line)
		}
		err = appendScript.Run(ctx, s.rdb, []string{s.stream}, args...).Err()
		if err == nil {
			s.head = next
			return nil
		}
		s.fresh = false
		if strings.HasPrefix(err.Error(), "HEADMOVED") && attempt < 10 {
			continue
		}
		if strings.HasPrefix(err.Error(), "HEADMOVED") {
			return fmt.Errorf("append to audit stream %s: %w", s.stream, ErrHeadMoved)
		}
		return fmt.Errorf("append to audit stream %s: %w", s.stream, err)
	}
}

func (s *RedisSink) readHead(ctx context.Context) (Head, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.stream, "+", "-", 1).Result()
	if err != nil {
		return Head{}, fmt.Errorf("read audit stream %s: %w", s.stream, err)
	}
	if len(msgs) == 0 {
		return GenesisHead, nil
	}
	line, _ := msgs[0].Values["rec"].(string)
	return headOf([]byte(line))
}

// Close implements [Sink]; the client stays open.
func (s *RedisSink) Close() error { return nil }

// ReadStream yields the records of an audit stream, oldest first.
func ReadStream(ctx context.Context, rdb redis.UniversalClient, stream string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		start := "-"
		for {
			msgs, err := rdb.XRangeN(ctx, stream, start, "+", 1000).Result()
			if err != nil {
				yield(Entry{}, fmt.Errorf("read audit stream %s: %w", stream, err))
				return
			}
			for _, m := range msgs {
				line, _ := m.Values["rec"].(string)
				if !yield(Entry{Where: stream + ":" + m.ID, Line: []byte(line)}, nil) {
					return
				}
			}
			if len(msgs) < 1000 {
				return
			}
			start = "(" + msgs[len(msgs)-1].ID
		}
	}
}

// Streams lists the audit streams whose names start with prefix.
func Streams(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			if seen[k] {
				continue
			}
			if t, err := c.Type(ctx, k).Result(); err == nil && t == "stream" {
				seen[k] = true
				out = append(out, k)
			}
		}
		return it.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		var mu = make(chan struct{}, 1)
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu <- struct{}{}
			defer func() { <-mu }()
			return scan(ctx, m)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		return nil, fmt.Errorf("list audit streams: unsupported client %T; name the stream", rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("list audit streams: %w", err)
	}
	slices.Sort(out)
	return out, nil
}
