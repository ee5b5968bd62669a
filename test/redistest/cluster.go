package redistest

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster timings: short, so that tests start and fail over in seconds.
const (
	// ClusterNodeTimeout is the nodes' cluster-node-timeout: a master
	// unreachable for this long is failed over to its replica.
	ClusterNodeTimeout = 1000 * time.Millisecond
	clusterTimeout     = 30 * time.Second // bound of create and every wait
	clusterMasters     = 3
)

// Cluster is a Redis Cluster of 3 masters with one replica each, every node
// a redis-server on a free loopback port (its cluster bus on another free
// port). It runs with cluster-require-full-coverage off, so slots of live
// masters keep answering while one master is down, as a deployment should.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts 6 nodes, joins them with redis-cli --cluster create
// (3 masters, 1 replica each) and waits until every node reports
// cluster_state:ok and every replica is in sync. Everything stops when the
// test ends. Skipped (failed when CI=true) without redis-server and
// redis-cli.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := lookBin(t, "redis-cli")
	c := &Cluster{t: t}
	for range 2 * clusterMasters {
		c.Nodes = append(c.Nodes, startServer(t, func(s *Server) error {
			bus, err := freePort()
			if err != nil {
				return err
			}
			s.args = []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-require-full-coverage", "no",
				"--repl-diskless-sync", "yes",
				"--repl-diskless-sync-delay", "0",
			}
			return nil
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// Addrs are the addresses of all nodes, masters and replicas.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is a redis+cluster:// URL naming every node.
func (c *Cluster) URL() string { return clusterURL("redis+cluster://", c.Addrs(), nil) }

func clusterURL(scheme string, addrs []string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	return scheme + addrs[0] + "?" + q.Encode()
}

// Server returns the node listening on addr, or nil.
func (c *Cluster) Server(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// client opens a plain connection to one node.
func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second,
		WriteTimeout: time.Second, MaxRetries: -1, PoolSize: 1})
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string
	isMaster, failed bool
	slots            []string
}

func clusterNodes(ctx context.Context, addr string) ([]clusterNode, error) {
	rdb := nodeClient(addr)
	defer rdb.Close()
	raw, err := rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		a, _, _ := strings.Cut(f[1], "@")
		out = append(out, clusterNode{id: f[0], addr: a, master: f[3],
			isMaster: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail"), slots: f[8:]})
	}
	return out, nil
}

// live returns the nodes whose process runs.
func (c *Cluster) live() []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		n.mu.Lock()
		up := n.cmd != nil
		n.mu.Unlock()
		if up {
			out = append(out, n)
		}
	}
	return out
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// every slot has a master that runs and every master that runs has a
// replica in sync (bounded).
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	if err := c.waitUntil(c.healthy); err != nil {
		c.t.Fatalf("redistest: cluster not healthy within %s: %v", clusterTimeout, err)
	}
}

// WaitServing waits until every running node reports cluster_state:ok and
// agrees that every slot is served by a running master (replicas may be
// missing): what a failover reaches once the replica is promoted.
func (c *Cluster) WaitServing() {
	c.t.Helper()
	if err := c.waitUntil(c.serving); err != nil {
		c.t.Fatalf("redistest: cluster not serving within %s: %v", clusterTimeout, err)
	}
}

func (c *Cluster) waitUntil(cond func(context.Context) error) error { return waitFor(cond) }

func (c *Cluster) serving(ctx context.Context) error {
	live := c.live()
	running := map[string]bool{}
	for _, n := range live {
		running[n.Addr()] = true
	}
	for _, n := range live {
		rdb := nodeClient(n.Addr())
		info, err := rdb.ClusterInfo(ctx).Result()
		rdb.Close()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", n.Addr())
		}
		nodes, err := clusterNodes(ctx, n.Addr())
		if err != nil {
			return err
		}
		masters := 0
		for _, cn := range nodes {
			if cn.isMaster && len(cn.slots) > 0 {
				if !running[cn.addr] || cn.failed {
					return fmt.Errorf("%s: slots still on %s (down)", n.Addr(), cn.addr)
				}
				masters++
			}
		}
		if masters != clusterMasters {
			return fmt.Errorf("%s sees %d masters with slots", n.Addr(), masters)
		}
	}
	return nil
}

func (c *Cluster) healthy(ctx context.Context) error {
	if err := c.serving(ctx); err != nil {
		return err
	}
	for _, n := range c.live() {
		rdb := nodeClient(n.Addr())
		info, err := rdb.Info(ctx, "replication").Result()
		rdb.Close()
		if err != nil {
			return err
		}
		switch {
		case strings.Contains(info, "role:master"):
			if !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
				return fmt.Errorf("%s: master without an online replica", n.Addr())
			}
		case !strings.Contains(info, "master_link_status:up"):
			return fmt.Errorf("%s: replica not in sync", n.Addr())
		}
	}
	return nil
}

// MasterFor returns the node that currently serves key's slot as master,
// as a running node sees it.
func (c *Cluster) MasterFor(key string) *Server {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.live() {
		rdb := nodeClient(n.Addr())
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		rdb.Close()
		if err != nil {
			continue
		}
		nodes, err := clusterNodes(ctx, n.Addr())
		if err != nil {
			continue
		}
		for _, cn := range nodes {
			if cn.isMaster && ownsSlot(cn.slots, int(slot)) {
				if s := c.Server(cn.addr); s != nil {
					return s
				}
			}
		}
	}
	c.t.Fatalf("redistest: no master found for key %q", key)
	return nil
}

// ReplicaOf returns the replica of master, or nil.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes, err := clusterNodes(ctx, master.Addr())
	if err != nil {
		c.t.Fatalf("redistest: cluster nodes of %s: %v", master.Addr(), err)
	}
	var id string
	for _, cn := range nodes {
		if cn.addr == master.Addr() {
			id = cn.id
		}
	}
	for _, cn := range nodes {
		if !cn.isMaster && cn.master == id {
			return c.Server(cn.addr)
		}
	}
	return nil
}

func ownsSlot(ranges []string, slot int) bool {
	for _, r := range ranges {
		if strings.HasPrefix(r, "[") {
			continue // a slot being migrated
		}
		lo, hi, ok := strings.Cut(r, "-")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && l <= slot && slot <= h {
			return true
		}
	}
	return false
}
