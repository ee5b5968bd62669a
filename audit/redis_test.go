package audit_test

import (
	"context"
	"crypto/ed25519"
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
			if err != nil || len(recs) != int(s.Records) || recs[0].Kind != audit.KindGenesis || recs[1].DecisionID != "d-0" {
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
		{name: "a server and guests on one stream keep one chain", run: func(t *testing.T, stream string, signer *audit.Signer) {
			server := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithBatchSize(5), audit.WithCheckpoints(7, time.Hour))
			record(t, server, 0, 1)
			waitFor(t, func() bool { return server.Stats().Written >= 2 })
			var wg sync.WaitGroup
			for w := 1; w < 3; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithBatchSize(5), audit.WithJoin(false))
					record(t, l, w*100, w*100+60)
					closeLog(t, l)
				}()
			}
			record(t, server, 1, 60)
			wg.Wait()
			closeLog(t, server)
			s, err := audit.VerifyWith(audit.ReadStream(context.Background(), rdb, stream),
				audit.VerifyOptions{Keys: []ed25519.PublicKey{signer.Public()}, AllowOpenTail: true})
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

	// Persistence is off: the restarted Redis is empty, the stream's head
	// moved back to nothing. The writer does not start the chain again
	// at seq 1: it halts and every decision is denied until a restart.
	srv.Restart()
	waitFor(t, func() bool { return l.Stats().Halted })
	req, resp := decision(99)
	if err := l.Record(context.Background(), "", req, resp); !errors.Is(err, audit.ErrHalted) {
		t.Fatalf("Record after the stream was lost = %v, want ErrHalted", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = l.Close(ctx)
	if n, err := rdb.XLen(context.Background(), stream).Result(); err != nil || n != 0 {
		t.Fatalf("the halted writer wrote %d records to the emptied stream (%v)", n, err)
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

// TestRedisAnchor: a log anchored in Redis verifies against the anchor; a
// lower head never replaces a higher one; a log cut below it fails.
func TestRedisAnchor(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	rdb := redisClient(t, addr)
	anchor := audit.NewRedisAnchor(rdb, audit.DefaultAnchorPrefix+"pdp-1")
	signer := newSigner(t)
	stream := audit.DefaultStreamPrefix + "anchored"
	l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithAnchor(anchor), audit.WithCheckpoints(10, time.Hour))
	record(t, l, 0, 35)
	closeLog(t, l)
	h, ok, err := anchor.Last(context.Background())
	if err != nil || !ok || !h.Closed || h.Verify(signer.Public()) != nil {
		t.Fatalf("anchor = %+v, %v, %v", h, ok, err)
	}
	if err := anchor.Put(context.Background(), audit.AnchorHead{Seq: 3, Hash: "x"}); err != nil {
		t.Fatal(err)
	}
	if h2, _, _ := anchor.Last(context.Background()); h2.Seq != h.Seq {
		t.Fatalf("a lower head replaced the anchor: %+v", h2)
	}
	opts := audit.VerifyOptions{Keys: []ed25519.PublicKey{signer.Public()}, AllowOpenTail: true, Anchor: &audit.Head{Seq: h.Seq, Hash: h.Hash}}
	if _, err := audit.VerifyWith(audit.ReadStream(context.Background(), rdb, stream), opts); err != nil {
		t.Fatalf("anchored stream: %v", err)
	}
	msgs, _ := rdb.XRevRangeN(context.Background(), stream, "+", "-", 5).Result()
	for _, m := range msgs {
		rdb.XDel(context.Background(), stream, m.ID)
	}
	if _, err := audit.VerifyWith(audit.ReadStream(context.Background(), rdb, stream), opts); !errors.Is(err, audit.ErrAnchor) {
		t.Fatalf("stream cut below the anchor: %v, want ErrAnchor", err)
	}
}
