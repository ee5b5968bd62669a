package audit_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
)

// discardSink throws batches away: the writer keeps up, so Record never
// waits for room and the benchmark measures what a request pays.
type discardSink struct{}

func (discardSink) Append(context.Context, *audit.Batch) error { return nil }
func (discardSink) Close() error                               { return nil }

// pausedSink blocks appends while mu is held: the benchmark holds it while
// it measures, so the writer goroutine does not compete for CPU.
type pausedSink struct{ mu sync.Mutex }

func (s *pausedSink) Append(context.Context, *audit.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return nil
}

func (s *pausedSink) Close() error { return nil }

// BenchmarkRecordRequestPath is what Record costs the request goroutine
// alone: the writer is paused while the timer runs (and drains the queue
// with the timer stopped).
func BenchmarkRecordRequestPath(b *testing.B) {
	req, resp := decision(1)
	ctx := context.Background()
	const queue = 1 << 17
	sink := &pausedSink{}
	sink.mu.Lock()
	l := audit.New(sink, audit.WithQueueSize(queue))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := l.Record(ctx, "", req, resp); err != nil {
			b.Fatal(err)
		}
		if n++; n == queue/2 {
			b.StopTimer()
			sink.mu.Unlock()
			for l.Stats().QueueDepth > 0 {
				time.Sleep(time.Millisecond)
			}
			sink.mu.Lock()
			n = 0
			b.StartTimer()
		}
	}
	b.StopTimer()
	sink.mu.Unlock()
	closeLog(b, l)
}

// BenchmarkRecord is the cost of auditing one decision on the request
// goroutine. sink=discard keeps the queue from filling: what a request
// pays. sink=file is sustained load on an fsynced file: the queue is full,
// Record waits for room (backpressure), so it measures the writer's
// throughput (hashing, encoding, write, fsync), not the request path.
func BenchmarkRecord(b *testing.B) {
	req, resp := decision(1)
	ctx := context.Background()
	sinks := []struct {
		name string
		open func(b *testing.B) audit.Sink
	}{
		{name: "sink=discard", open: func(*testing.B) audit.Sink { return discardSink{} }},
		{name: "sink=file", open: func(b *testing.B) audit.Sink {
			s, err := audit.OpenFile(filepath.Join(b.TempDir(), "audit.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, s := range sinks {
		b.Run(s.name, func(b *testing.B) {
			l := audit.New(s.open(b), audit.WithSigner(newSigner(b)), audit.WithEnqueueTimeout(time.Minute))
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Record(ctx, "", req, resp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			closeLog(b, l)
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			l := audit.New(s.open(b), audit.WithSigner(newSigner(b)), audit.WithEnqueueTimeout(time.Minute))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Record(ctx, "", req, resp); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			closeLog(b, l)
		})
	}
	// Durable: each Record waits for its fsync; 64 goroutines share them.
	b.Run("sink=file/ack=durable/parallel", func(b *testing.B) {
		s, err := audit.OpenFile(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		l := audit.New(s, audit.WithSigner(newSigner(b)), audit.WithDurable(true))
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Record(ctx, "", req, resp); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		closeLog(b, l)
	})
}
