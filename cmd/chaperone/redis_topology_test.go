package main

import (
	"context"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestRedisTopologyDefaults: --redis-min-replicas-ack defaults to 1 on a
// Cluster with replicas and on Sentinel, 0 on a single server, and an
// explicit value wins; readiness on a Cluster holds while one master is
// down (its other masters still answer).
func TestRedisTopologyDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.StartCluster(t)
	single, _ := redistest.Start(t)
	cases := []struct {
		name string
		url  string
		flag int
		want int
	}{
		{"cluster", c.URL(), -1, 1},
		{"cluster, explicit", c.URL(), 0, 0},
		{"single", "redis://" + single, -1, 0},
		{"single, explicit", "redis://" + single, 2, 2},
	}
	for _, tc := range cases {
		client, err := newRedisClient(tc.url, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, err := minReplicasAck(ctx, tc.flag, tc.url, client)
		client.Close()
		if err != nil || got != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, got, err, tc.want)
		}
	}
	// Sentinel is decided from the URL alone.
	if got, err := minReplicasAck(ctx, -1, "redis+sentinel://127.0.0.1:1/0?master_name=m", nil); err != nil || got != 1 {
		t.Errorf("sentinel: %d %v, want 1", got, err)
	}

	client, err := newRedisClient(c.URL(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := pingRedis(ctx, client); err != nil {
		t.Fatalf("ready with every node up: %v", err)
	}
	c.MasterFor("k").Kill()
	for i := range 10 {
		if err := pingRedis(ctx, client); err != nil {
			t.Fatalf("ping %d with one master down: %v", i, err)
		}
	}
}
