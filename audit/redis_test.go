package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

func redisClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{addr}, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestRedisSink(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	rdb := redisClient(t, addr)
	tests := []struct {
		name string
		run  func(t *testing.T, stream string, signer *audit.Signer)
	}{
		{name: "records verify from the stream", run: func(t *testing.T, stream string, signer *audit.Signer) {
			l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithBatchSize(7))
			record(t, l, 0, 100)
			closeLog(t, l)
			s, err := audit.Verify(audit.ReadStream(context.Background(), rdb, stream), signer.Public())
			if err != nil || s.Decisions != 100 || s.UnsignedTail != 0 {
				t.Fatalf("Verify = %+v, %v", s, err)
			}
			recs, err := audit.Records(audit.ReadStream(context.Background(), rdb, stream))
			if err != nil || len(recs) != int(s.Records) || recs[0].DecisionID != "d-0" {
				t.Fatalf("Records: %d, %v", len(recs), err)
			}
		}},
		{name: "a deleted entry is found", run: func(t *testing.T, stream string, signer *audit.Signer) {
			l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer))
			record(t, l, 0, 10)
			closeLog(t, l)
			msgs, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			rdb.XDel(context.Background(), stream, msgs[4].ID)
			_, err = audit.Verify(audit.ReadStream(context.Background(), rdb, stream), signer.Public())
			var te *audit.TamperError
			if !errors.As(err, &te) || te.Where != stream+":"+msgs[5].ID {
				t.Fatalf("Verify = %v, want the entry after %s named", err, msgs[4].ID)
			}
		}},
		{name: "writers on one stream keep one chain", run: func(t *testing.T, stream string, signer *audit.Signer) {
			var wg sync.WaitGroup
			for w := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithBatchSize(5))
					record(t, l, w*100, w*100+60)
					closeLog(t, l)
				}()
			}
			wg.Wait()
			s, err := audit.Verify(audit.ReadStream(context.Background(), rdb, stream), signer.Public())
			if err != nil || s.Decisions != 180 {
				t.Fatalf("Verify = %+v, %v", s, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, audit.DefaultStreamPrefix+t.Name(), newSigner(t))
		})
	}
}

func TestRedisStreamsListed(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	rdb := redisClient(t, addr)
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		l := audit.New(audit.NewRedisSink(rdb, audit.DefaultStreamPrefix+name))
		record(t, l, 0, 2)
		closeLog(t, l)
	}
	rdb.Set(ctx, audit.DefaultStreamPrefix+"not-a-stream", "x", 0)
	got, err := audit.Streams(ctx, rdb, audit.DefaultStreamPrefix)
	if err != nil || len(got) != 2 || got[0] != audit.DefaultStreamPrefix+"a" {
		t.Fatalf("Streams = %v, %v", got, err)
	}
}

// With Redis down and the queue full, fail-closed Record fails (the server
// answers DENY AUDIT_UNAVAILABLE); when Redis is back, what was queued is
// written and the chain continues.
func TestRedisDownFailClosed(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := redisClient(t, srv.Addr())
	stream := audit.DefaultStreamPrefix + "fault"
	signer := newSigner(t)
	l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithQueueSize(8),
		audit.WithEnqueueTimeout(10*time.Millisecond), audit.WithCheckpoints(1000, time.Hour))
	record(t, l, 0, 5)
	waitFor(t, func() bool { return l.Stats().Written >= 5 })

	srv.Kill()
	var refused, accepted int
	for i := 5; i < 40; i++ {
		req, resp := decision(i)
		switch err := l.Record(context.Background(), "", req, resp); {
		case err == nil:
			accepted++
		case errors.Is(err, audit.ErrUnavailable):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if refused == 0 {
		t.Fatalf("nothing refused with Redis down; Stats = %+v", l.Stats())
	}
	waitFor(t, func() bool { return !l.Stats().SinkHealthy && l.Stats().SinkErrors > 0 })

	// Persistence is off: the restarted Redis is empty, so the chain
	// starts again there. Only what was queued during the outage follows.
	srv.Restart()
	waitFor(t, func() bool { return l.Stats().SinkHealthy && l.Stats().QueueDepth == 0 })
	closeLog(t, l)
	s, err := audit.Verify(audit.ReadStream(context.Background(), rdb, stream), signer.Public())
	if err != nil || s.Decisions != uint64(accepted) {
		t.Fatalf("Verify = %+v, %v; want %d decisions", s, err, accepted)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
