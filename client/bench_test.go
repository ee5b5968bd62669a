package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/client"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// BenchmarkCheck: a Check answered from the cache against one that goes
// to a loopback server (the reference bundle, in-process).
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
		opts []client.Option
	}{
		{"cache=hit", time.Hour, []client.Option{client.WithCache(1000)}},
		{"cache=off", 0, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := startPDP(b, bc.ttl)
			c, err := client.New(p.url, append([]client.Option{generous()}, bc.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			req := allowReq()
			ctx := context.Background()
			if r := c.Check(ctx, req); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				b.Fatalf("%s", r.GetDecision())
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := c.Check(ctx, req); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
					b.Fatalf("%s", r.GetDecision())
				}
			}
		})
	}
}

// BenchmarkCheckParallel: cached Checks from every core at once (the
// cache's lock under contention).
func BenchmarkCheckParallel(b *testing.B) {
	p := startPDP(b, time.Hour)
	c, err := client.New(p.url, generous(), client.WithCache(1000))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	c.Check(ctx, allowReq())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := allowReq()
		for pb.Next() {
			if r := c.Check(ctx, req); r.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				b.Errorf("%s", r.GetDecision())
				return
			}
		}
	})
}
