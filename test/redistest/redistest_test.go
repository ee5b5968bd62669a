package redistest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/test/redistest"
)

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestStart(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"first", "second", "third"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr, stop := redistest.Start(t)
			if err := ping(addr); err != nil {
				t.Fatalf("PING %s: %v", addr, err)
			}
			stop()
			stop() // harmless twice
			if err := ping(addr); err == nil {
				t.Fatalf("PING %s after stop answered", addr)
			}
		})
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	s.Kill()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	s.Restart() // while running: kills first
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after second Restart: %v", err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	for i := range 20 {
		if err := rdb.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatalf("set on the cluster: %v", err)
		}
	}
	master := c.MasterFor("k1")
	replica := c.ReplicaOf(master)
	if replica == nil || replica == master {
		t.Fatalf("replica of %s: %v", master.Addr(), replica)
	}
	master.Kill()
	c.WaitServing()
	if got := c.MasterFor("k1"); got != replica {
		t.Errorf("after the kill k1 is on %s, want the promoted replica %s", got.Addr(), replica.Addr())
	}
	master.Restart() // rejoins as a replica
	c.WaitHealthy()
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	old := s.Master()
	if old != s.Data[0] {
		t.Fatalf("master is %v, want %s", old, s.Data[0].Addr())
	}
	s.Failover()
	if got := s.WaitNewMaster(old); got != s.Data[1] {
		t.Errorf("new master %v, want %s", got, s.Data[1].Addr())
	}
	s.WaitReplicaInSync(old)
}
