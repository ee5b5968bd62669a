package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/consentstore"
)

// encryptionKeyEnv holds the AES key for consent payloads at rest when
// --encryption-key-file is not given.
const encryptionKeyEnv = "CHAPERONE_ENCRYPTION_KEY"

// redisFlags are serve's flags for the shared Redis store.
type redisFlags struct {
	url       string
	timeout   time.Duration
	cacheSize int
	cacheTTL  time.Duration
	keyFile   string
	// minAcks is --redis-min-replicas-ack; -1 picks it from the topology.
	minAcks int
	// limits are what Put accepts (set by serve from its consent flags).
	limits consentstore.Limits
}

const redisURLHelp = `Redis holding consents, break-glass grants and vendor agreements shared by all replicas
(default: the embedded in-memory store). Forms:
  redis://[user:pass@]host:6379/0             standalone (rediss:// for TLS)
  redis+sentinel://[user:pass@]s1:26379/0?master_name=mymaster&addr=s2:26379&addr=s3:26379
                                              Sentinel (rediss+sentinel:// for TLS)
  redis+cluster://[user:pass@]n1:6379?addr=n2:6379&addr=n3:6379
                                              Cluster (rediss+cluster:// for TLS)
Query parameters set client options (dial_timeout, pool_size, ...)`

func (f *redisFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "redis", "", redisURLHelp)
	fs.DurationVar(&f.timeout, "redis-timeout", consentstore.DefaultRedisTimeout, "bound of every Redis call; a Check that cannot read consents in time is denied (CONSENT_UNAVAILABLE)")
	fs.IntVar(&f.cacheSize, "cache-size", consentstore.DefaultCacheSize, "local cache entries per replica (patients, and client agreements); 0 turns the cache off")
	fs.DurationVar(&f.cacheTTL, "cache-ttl", consentstore.DefaultCacheTTL, "how long a cached entry may be served (it is also dropped on every write, from any replica)")
	fs.IntVar(&f.minAcks, "redis-min-replicas-ack", -1, "replicas that must acknowledge every consent, grant and agreement write (Redis WAIT, within --redis-timeout) before it is reported done; otherwise the RPC fails (unavailable). Default: 1 on Sentinel and on a Cluster with replicas, 0 on a single server")
	fs.StringVar(&f.keyFile, "encryption-key-file", "", "key set encrypting consents, grants and agreements in Redis (AES-256-GCM): JSON {\"primary\":\"k2\",\"keys\":{\"k1\":\"<base64>\",\"k2\":\"<base64>\"}} (chaperone keys new/rotate/drop), or one key of 32 random bytes in standard base64; also $"+encryptionKeyEnv+"; without either, the key set at $XDG_CONFIG_HOME/chaperone/encryption-keys.json (else ~/.config/chaperone/encryption-keys.json), generated there on first start")
}

// newRedisClient builds a go-redis UniversalClient from a --redis URL.
func newRedisClient(raw string, timeout time.Duration) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	scheme, mode, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" {
		return nil, fmt.Errorf("%s: want redis://, rediss://, redis+sentinel:// or redis+cluster://", u.Redacted())
	}
	u.Scheme = scheme
	plain := u.String()
	switch mode {
	case "":
		o, err := redis.ParseURL(plain)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		return redis.NewClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		return redis.NewFailoverClient(o), nil
	case "cluster":
		o, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		if o.ClusterStateReloadInterval == 0 {
			// The store also reloads the slot map on every Redis error;
			// this bounds how stale it is otherwise (go-redis: 60s).
			o.ClusterStateReloadInterval = clusterReloadInterval
		}
		return redis.NewClusterClient(o), nil
	}
	return nil, fmt.Errorf("%s: unknown mode %q (want sentinel or cluster)", u.Redacted(), mode)
}

// openRedis connects to Redis and returns the shared store (consents,
// grants and agreements) and a closer for it and the client. It fails when
// Redis does not answer PING within the timeout: serve should not start on
// a store it cannot reach (once running, it fails closed instead). ping
// asks Redis whether it answers (readiness).
func openRedis(ctx context.Context, f redisFlags, getenv func(string) string, logger *slog.Logger, hooks ...redis.Hook) (store *consentstore.Redis, closer, ping func(context.Context) error, err error) {
	client, err := newRedisClient(f.url, f.timeout)
	if err != nil {
		return nil, nil, nil, usageErrorf("--redis: %v", err)
	}
	for _, h := range hooks {
		client.AddHook(h)
	}
	keys, err := serveKeySet(f.keyFile, getenv, time.Now(), logger)
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, usageErrorf("%v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		return nil, nil, nil, fmt.Errorf("redis: %w", err)
	}
	acks, err := minReplicasAck(pctx, f.minAcks, f.url, client)
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, err
	}
	opts := []consentstore.RedisOption{
		consentstore.WithMinReplicasAck(acks),
		consentstore.WithRedisTimeout(f.timeout),
		consentstore.WithCache(f.cacheSize, f.cacheTTL),
		consentstore.WithRedisLogger(logger),
		consentstore.WithLimits(f.limits),
	}
	opts = append(opts, consentstore.WithKeySet(keys))
	store, err = consentstore.NewRedis(client, opts...)
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, usageErrorf("%v", err)
	}
	logger.Info("redis store", slog.String("redis", redactURL(f.url)), slog.String("encryption_key", primaryID(keys)),
		slog.Int("cache_size", f.cacheSize), slog.Duration("cache_ttl", f.cacheTTL), slog.Int("min_replicas_ack", acks))
	closer = func(context.Context) error { return errors.Join(store.Close(), client.Close()) }
	ping = func(ctx context.Context) error { return pingRedis(ctx, client) }
	return store, closer, ping, nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

// redisErrors counts failed Redis commands and dials, for the metrics. A
// missing key (redis.Nil) is an answer, not a failure, and so is a server
// that does not know the client's optional handshake commands (CLIENT
// SETINFO and the like, refused by older servers).
type redisErrors struct{ n atomic.Uint64 }

var _ redis.Hook = (*redisErrors)(nil)

func (c *redisErrors) countCmd(cmd redis.Cmder) {
	err := cmd.Err()
	if err == nil || errors.Is(err, redis.Nil) || cmd.Name() == "client" || cmd.Name() == "hello" {
		return
	}
	c.n.Add(1)
}

func (c *redisErrors) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			c.n.Add(1)
		}
		return conn, err
	}
}

func (c *redisErrors) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c.countCmd(cmd)
		return err
	}
}

func (c *redisErrors) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			c.countCmd(cmd)
		}
		return err
	}
}

// clusterReloadInterval is how often a Cluster client reloads its slot map
// when nothing went wrong (the store also reloads it on every Redis error).
const clusterReloadInterval = 5 * time.Second

// minReplicasAck is --redis-min-replicas-ack, or when it is -1 the default
// of the topology: 1 on Sentinel (a failover promotes the replica), 1 on a
// Cluster whose nodes include a replica, 0 on a single server.
func minReplicasAck(ctx context.Context, flag int, rawURL string, client redis.UniversalClient) (int, error) {
	if flag >= 0 {
		return flag, nil
	}
	if u, err := url.Parse(rawURL); err == nil && strings.HasSuffix(u.Scheme, "+sentinel") {
		return 1, nil
	}
	if c, ok := client.(*redis.ClusterClient); ok {
		nodes, err := c.ClusterNodes(ctx).Result()
		if err != nil {
			return 0, fmt.Errorf("redis cluster nodes: %w", err)
		}
		if strings.Contains(nodes, "slave") {
			return 1, nil
		}
	}
	return 0, nil
}

// pingRedis is readiness: the server answers PING. On a Cluster it is
// ready while any master answers: with one master down (failing over) the
// patients of the other masters are still answered, and a replica taken
// out of its load balancer would answer nobody. A plain PING would go to
// the master of a random slot.
func pingRedis(ctx context.Context, client redis.UniversalClient) error {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return client.Ping(ctx).Err()
	}
	var answered atomic.Bool
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := m.Ping(ctx).Err(); err != nil {
			return err
		}
		answered.Store(true)
		return nil
	})
	if answered.Load() {
		return nil
	}
	return err
}
