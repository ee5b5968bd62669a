package audit_test

import (
	"context"
	"crypto/ed25519"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestRedisStreamTopologies: the audit stream on a Redis Cluster (3
// masters, 3 replicas) and on Sentinel (master, replica, 3 sentinels): a
// server and guests keep one verifiable chain on one stream, and the
// streams of several servers, spread over the Cluster's masters, are all
// listed.
func TestRedisStreamTopologies(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	topologies := []struct {
		name  string
		start func(t *testing.T) redis.UniversalClient
	}{
		{"cluster", func(t *testing.T) redis.UniversalClient {
			c := redistest.StartCluster(t)
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRetries: -1,
				DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
		}},
		{"sentinel", func(t *testing.T) redis.UniversalClient {
			s := redistest.StartSentinel(t)
			return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster,
				SentinelAddrs: s.SentinelAddrs(), MaxRetries: -1, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
		}},
	}
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			rdb := tp.start(t)
			t.Cleanup(func() { rdb.Close() })
			ctx := context.Background()
			signer := newSigner(t)
			stream := audit.DefaultStreamPrefix + "shared"
			server := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithBatchSize(5), audit.WithCheckpoints(7, time.Hour))
			record(t, server, 0, 1)
			waitFor(t, func() bool { return server.Stats().Written >= 2 })
			var wg sync.WaitGroup
			for w := 1; w < 3; w++ {
				wg.Go(func() {
					l := audit.New(audit.NewRedisSink(rdb, stream), audit.WithSigner(signer), audit.WithBatchSize(5), audit.WithJoin(false))
					record(t, l, w*100, w*100+60)
					closeLog(t, l)
				})
			}
			record(t, server, 1, 60)
			wg.Wait()
			closeLog(t, server)
			s, err := audit.VerifyWith(audit.ReadStream(ctx, rdb, stream),
				audit.VerifyOptions{Keys: []ed25519.PublicKey{signer.Public()}, AllowOpenTail: true})
			if err != nil || s.Decisions != 180 {
				t.Fatalf("Verify = %+v, %v", s, err)
			}
			names := []string{"a", "b", "c", "d", "e", "f"}
			for _, n := range names {
				l := audit.New(audit.NewRedisSink(rdb, audit.DefaultStreamPrefix+"srv-"+n))
				record(t, l, 0, 2)
				closeLog(t, l)
			}
			got, err := audit.Streams(ctx, rdb, audit.DefaultStreamPrefix+"srv-")
			if err != nil || len(got) != len(names) {
				t.Fatalf("Streams = %v, %v; want %d streams", got, err, len(names))
			}
		})
	}
}
