package redistest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Sentinel timings: a master unanswered for SentinelDownAfter is failed
// over.
const (
	SentinelDownAfter = 1000 * time.Millisecond
	sentinelFailover  = 5000 * time.Millisecond
	sentinelTimeout   = 30 * time.Second
	// SentinelMaster is the monitored master's name.
	SentinelMaster = "mymaster"
)

// Sentinel is a Sentinel setup on loopback: a master, one replica and three
// sentinels (quorum 2) monitoring it as [SentinelMaster].
type Sentinel struct {
	t         testing.TB
	Data      []*Server // the master first, then the replica (initially)
	Sentinels []*Server
}

// StartSentinel starts the master, its replica and three sentinels, and
// waits until the replica is in sync and every sentinel knows the replica
// and the two other sentinels, so that a failover can be agreed. Skipped
// (failed when CI=true) without redis-server.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t}
	master := startServer(t, func(srv *Server) error {
		srv.args = []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
		return nil
	})
	replica := startServer(t, func(srv *Server) error {
		srv.args = []string{"--replicaof", "127.0.0.1", fmt.Sprint(master.Port()),
			"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
		return nil
	})
	s.Data = []*Server{master, replica}
	if err := waitFor(func(ctx context.Context) error { return replicaInSync(ctx, replica.Addr()) }); err != nil {
		t.Fatalf("redistest: sentinel replica: %v", err)
	}
	for range 3 {
		s.Sentinels = append(s.Sentinels, startServer(t, func(srv *Server) error {
			conf := filepath.Join(srv.Dir(), "sentinel.conf")
			body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
				"sentinel down-after-milliseconds %[1]s %[3]d\n"+
				"sentinel failover-timeout %[1]s %[4]d\n"+
				"sentinel parallel-syncs %[1]s 1\n",
				SentinelMaster, master.Port(), SentinelDownAfter.Milliseconds(), sentinelFailover.Milliseconds())
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				return err
			}
			srv.conf, srv.args = conf, []string{"--sentinel"}
			return nil
		}))
	}
	if err := waitFor(s.ready); err != nil {
		t.Fatalf("redistest: sentinels not ready within %s: %v", sentinelTimeout, err)
	}
	return s
}

// SentinelAddrs are the sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr()
	}
	return out
}

// URL is a redis+sentinel:// URL naming every sentinel and the master.
func (s *Sentinel) URL() string {
	return clusterURL("redis+sentinel://", s.SentinelAddrs(), url.Values{"master_name": {SentinelMaster}})
}

// Server returns the data node (master or replica) on addr, or nil.
func (s *Sentinel) Server(addr string) *Server {
	for _, n := range s.Data {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// Master asks a running sentinel which data node is the master.
func (s *Sentinel) Master() *Server {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addr, err := s.masterAddr(ctx)
	if err != nil {
		s.t.Fatalf("redistest: sentinel master: %v", err)
	}
	return s.Server(addr)
}

func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var last error
	for _, n := range s.Sentinels {
		rdb := nodeClient(n.Addr())
		v, err := rdb.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
		rdb.Close()
		if err == nil && len(v) == 2 {
			return v[0] + ":" + v[1], nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel answered: %v", last)
}

// Failover asks a sentinel to fail over now (SENTINEL FAILOVER).
func (s *Sentinel) Failover() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rdb := nodeClient(s.Sentinels[0].Addr())
	defer rdb.Close()
	if err := rdb.Do(ctx, "SENTINEL", "FAILOVER", SentinelMaster).Err(); err != nil {
		s.t.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
}

// WaitNewMaster waits until every running sentinel names a master other
// than old, and that node answers as a master; it returns the new master.
func (s *Sentinel) WaitNewMaster(old *Server) *Server {
	s.t.Helper()
	var found *Server
	err := waitFor(func(ctx context.Context) error {
		for _, n := range s.Sentinels {
			rdb := nodeClient(n.Addr())
			v, err := rdb.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
			rdb.Close()
			if err != nil {
				continue // a killed sentinel
			}
			if len(v) != 2 || v[0]+":"+v[1] == old.Addr() {
				return fmt.Errorf("sentinel %s still names %v", n.Addr(), v)
			}
			found = s.Server(v[0] + ":" + v[1])
		}
		if found == nil {
			return fmt.Errorf("no sentinel names a known master")
		}
		rdb := nodeClient(found.Addr())
		info, err := rdb.Info(ctx, "replication").Result()
		rdb.Close()
		if err != nil || !strings.Contains(info, "role:master") {
			return fmt.Errorf("%s is not master yet", found.Addr())
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("redistest: no new master within %s: %v", sentinelTimeout, err)
	}
	return found
}

// WaitReplicaInSync waits until n is a replica in sync with its master.
func (s *Sentinel) WaitReplicaInSync(n *Server) {
	s.t.Helper()
	if err := waitFor(func(ctx context.Context) error { return replicaInSync(ctx, n.Addr()) }); err != nil {
		s.t.Fatalf("redistest: %s not in sync: %v", n.Addr(), err)
	}
}

func (s *Sentinel) ready(ctx context.Context) error {
	for _, n := range s.Sentinels {
		rdb := nodeClient(n.Addr())
		replicas, err := rdb.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
		if err != nil {
			rdb.Close()
			return err
		}
		others, err := rdb.Do(ctx, "SENTINEL", "SENTINELS", SentinelMaster).Slice()
		rdb.Close()
		if err != nil {
			return err
		}
		if len(replicas) != 1 || len(others) != len(s.Sentinels)-1 {
			return fmt.Errorf("sentinel %s knows %d replicas and %d sentinels", n.Addr(), len(replicas), len(others))
		}
	}
	return nil
}

func replicaInSync(ctx context.Context, addr string) error {
	rdb := nodeClient(addr)
	defer rdb.Close()
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("%s: replica link not up", addr)
	}
	return nil
}

// waitFor polls cond until it returns nil or sentinelTimeout passes.
func waitFor(cond func(context.Context) error) error {
	deadline := time.Now().Add(sentinelTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
