package audit_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/audit"
)

func openFile(t *testing.T, path string, opts ...audit.FileOption) *audit.FileSink {
	t.Helper()
	s, err := audit.OpenFile(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifyFile(t *testing.T, path string, wantDecisions uint64, signer *audit.Signer) audit.Summary {
	t.Helper()
	s, err := audit.Verify(audit.ReadFiles(path), signer.Public())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if s.Decisions != wantDecisions {
		t.Fatalf("Decisions = %d, want %d", s.Decisions, wantDecisions)
	}
	return s
}

func record(t testing.TB, l *audit.Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		req, resp := decision(i)
		if err := l.Record(context.Background(), "", req, resp); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

func TestFileSink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, path string, signer *audit.Signer)
	}{
		{name: "rotation continues the chain", run: func(t *testing.T, path string, signer *audit.Signer) {
			l := audit.New(openFile(t, path, audit.WithMaxFileSize(4096)), audit.WithSigner(signer), audit.WithBatchSize(3))
			record(t, l, 0, 200)
			closeLog(t, l)
			segs, _ := filepath.Glob(path + ".0*")
			if len(segs) < 3 {
				t.Fatalf("%d rotated files, want several", len(segs))
			}
			verifyFile(t, path, 200, signer)
			// Deleting a rotated file breaks the chain.
			if err := os.Remove(segs[1]); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.Verify(audit.ReadFiles(path), signer.Public()); err == nil {
				t.Fatal("Verify passed with a rotated file deleted")
			}
		}},
		{name: "reopen resumes the chain", run: func(t *testing.T, path string, signer *audit.Signer) {
			for round := range 3 {
				l := audit.New(openFile(t, path), audit.WithSigner(signer))
				record(t, l, round*10, round*10+10)
				closeLog(t, l)
			}
			verifyFile(t, path, 30, signer)
		}},
		{name: "reopen after rotation to an empty file", run: func(t *testing.T, path string, signer *audit.Signer) {
			l := audit.New(openFile(t, path, audit.WithMaxFileSize(1)), audit.WithSigner(signer))
			record(t, l, 0, 5)
			closeLog(t, l)
			if st, err := os.Stat(path); err != nil || st.Size() != 0 {
				t.Fatalf("active file after rotation: %v, %v", st, err)
			}
			l = audit.New(openFile(t, path), audit.WithSigner(signer))
			record(t, l, 5, 10)
			closeLog(t, l)
			verifyFile(t, path, 10, signer)
		}},
		{name: "torn last line is cut off", run: func(t *testing.T, path string, signer *audit.Signer) {
			l := audit.New(openFile(t, path), audit.WithSigner(signer))
			record(t, l, 0, 5)
			closeLog(t, l)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"seq":7,"prev":"ab`) // a crash mid-write
			f.Close()
			l = audit.New(openFile(t, path), audit.WithSigner(signer))
			record(t, l, 5, 10)
			closeLog(t, l)
			verifyFile(t, path, 10, signer)
		}},
		{name: "two writers on one file keep one chain", run: func(t *testing.T, path string, signer *audit.Signer) {
			// The server, and a guest (audit review) appending while it runs.
			server := audit.New(openFile(t, path, audit.WithMaxFileSize(8192)), audit.WithSigner(signer),
				audit.WithBatchSize(2), audit.WithCheckpoints(5, time.Hour))
			record(t, server, 0, 1)
			for i := 0; server.Stats().Written < 2; i++ {
				if i == 1000 {
					t.Fatal("the server wrote nothing in 10 s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				guest := audit.New(openFile(t, path, audit.WithMaxFileSize(8192)), audit.WithSigner(signer),
					audit.WithBatchSize(2), audit.WithJoin(false))
				record(t, guest, 1000, 1100)
				closeLog(t, guest)
			}()
			record(t, server, 1, 100)
			wg.Wait()
			closeLog(t, server)
			s, err := audit.VerifyWith(audit.ReadFiles(path), audit.VerifyOptions{Keys: []ed25519.PublicKey{signer.Public()}, AllowOpenTail: true})
			if err != nil || s.Decisions != 200 {
				t.Fatalf("Verify = %+v, %v; want 200 decisions", s, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, filepath.Join(t.TempDir(), "sub", "audit.jsonl"), newSigner(t))
		})
	}
}

func TestLogFailClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		failClosed bool
	}{
		{name: "fail-closed", failClosed: true},
		{name: "fail-open", failClosed: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			sink := &flakySink{inner: openFile(t, path)}
			sink.fail.Store(true)
			signer := newSigner(t)
			l := audit.New(sink, audit.WithSigner(signer), audit.WithQueueSize(4), audit.WithBatchSize(2),
				audit.WithEnqueueTimeout(5*time.Millisecond), audit.WithFailClosed(tt.failClosed))
			var failed int
			for i := range 20 {
				req, resp := decision(i)
				err := l.Record(context.Background(), "", req, resp)
				switch {
				case err == nil:
				case tt.failClosed && errorsIs(err, audit.ErrUnavailable):
					failed++
				default:
					t.Fatalf("Record %d: %v", i, err)
				}
			}
			st := l.Stats()
			if st.SinkHealthy || st.SinkErrors == 0 {
				t.Errorf("Stats = %+v, want an unhealthy sink with errors", st)
			}
			if err := l.Healthy(); !errorsIs(err, audit.ErrSinkDown) {
				t.Errorf("Healthy() = %v while the sink fails, want ErrSinkDown", err)
			}
			if tt.failClosed {
				if failed == 0 || st.Rejected != uint64(failed) || st.Dropped != 0 {
					t.Fatalf("failed %d; Stats = %+v", failed, st)
				}
			} else if st.Dropped == 0 || st.Rejected != 0 {
				t.Fatalf("Stats = %+v, want drops counted", st)
			}
			accepted := 20 - failed - int(st.Dropped)
			sink.fail.Store(false) // the sink comes back: everything queued is written
			for i := 0; l.Healthy() != nil; i++ {
				if i == 1000 {
					t.Fatalf("Healthy() = %v 10 s after the sink came back", l.Healthy())
				}
				time.Sleep(10 * time.Millisecond)
			}
			closeLog(t, l)
			if err := l.Healthy(); !errorsIs(err, audit.ErrClosed) {
				t.Errorf("Healthy() after Close = %v, want ErrClosed", err)
			}
			s := verifyFile(t, path, uint64(accepted), signer)
			if s.Drops != st.Dropped {
				t.Errorf("drop records say %d, Stats.Dropped = %d", s.Drops, st.Dropped)
			}
		})
	}
}

func TestLogClose(t *testing.T) {
	t.Parallel()
	t.Run("gives up at the deadline and counts what was lost", func(t *testing.T) {
		t.Parallel()
		sink := &flakySink{inner: openFile(t, filepath.Join(t.TempDir(), "audit.jsonl"))}
		sink.fail.Store(true)
		l := audit.New(sink, audit.WithQueueSize(100))
		record(t, l, 0, 10)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := l.Close(ctx)
		if err == nil || !contains(err.Error(), "10 records not written") {
			t.Fatalf("Close = %v, want 10 records not written", err)
		}
	})
	t.Run("refuses records after close", func(t *testing.T) {
		t.Parallel()
		l := audit.New(openFile(t, filepath.Join(t.TempDir(), "audit.jsonl")))
		closeLog(t, l)
		req, resp := decision(1)
		if err := l.Record(context.Background(), "", req, resp); !errorsIs(err, audit.ErrClosed) || !errorsIs(err, audit.ErrUnavailable) {
			t.Fatalf("Record after Close = %v, want ErrClosed", err)
		}
		closeLog(t, l) // twice is fine
	})
	t.Run("drains concurrent records", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		signer := newSigner(t)
		l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithQueueSize(64))
		var wg sync.WaitGroup
		var ok [4]int
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5000 {
					req, resp := decision(g*10000 + i)
					if l.Record(context.Background(), "", req, resp) != nil {
						return // closed
					}
					ok[g]++
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		closeLog(t, l)
		wg.Wait()
		total := ok[0] + ok[1] + ok[2] + ok[3]
		s := verifyFile(t, path, uint64(total), signer)
		if s.UnsignedTail != 0 {
			t.Errorf("UnsignedTail = %d after Close, want 0 (final checkpoint)", s.UnsignedTail)
		}
	})
	t.Run("checkpoints every n records", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		signer := newSigner(t)
		l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithCheckpoints(10, time.Hour), audit.WithBatchSize(1))
		record(t, l, 0, 35)
		closeLog(t, l)
		// After records 10, 20 (+1 checkpoint), 30 (+2) and the final one.
		if s := verifyFile(t, path, 35, signer); s.Checkpoints != 4 || l.Stats().Checkpoints != 4 {
			t.Errorf("Checkpoints = %d (stats %d), want 4", s.Checkpoints, l.Stats().Checkpoints)
		}
	})
	t.Run("checkpoints every interval", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		signer := newSigner(t)
		l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithCheckpoints(1000, 50*time.Millisecond))
		record(t, l, 0, 3)
		deadline := time.Now().Add(5 * time.Second)
		for l.Stats().Checkpoints == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if l.Stats().Checkpoints == 0 {
			t.Fatal("no checkpoint after the interval")
		}
		closeLog(t, l)
	})
}

func TestLogGroupCommit(t *testing.T) {
	t.Parallel()
	// waitWritten polls until n records are stored (at most 10 s).
	waitWritten := func(t *testing.T, l *audit.Log, n uint64) {
		t.Helper()
		for i := 0; l.Stats().Written < n; i++ {
			if i == 1000 {
				t.Fatalf("%d of %d records written after 10 s", l.Stats().Written, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		// The first record is written at once; the writer then waits the
		// sync delay, so the 50 recorded meanwhile share the next write
		// and fsync, and Close adds the final checkpoint: three appends.
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		sink := &flakySink{inner: openFile(t, path)}
		signer := newSigner(t)
		l := audit.New(sink, audit.WithSigner(signer), audit.WithSyncDelay(time.Minute))
		record(t, l, 0, 1)
		waitWritten(t, l, 1)
		record(t, l, 1, 51)
		closeLog(t, l) // Close cuts the delay short and drains
		if n := sink.calls.Load(); n != 3 {
			t.Errorf("%d appends for 51 records and a checkpoint, want 3", n)
		}
		verifyFile(t, path, 51, signer)
	})
	t.Run("no delay", func(t *testing.T) {
		t.Parallel()
		// Without a delay every record is written while the log runs,
		// before Close.
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		signer := newSigner(t)
		l := audit.New(openFile(t, path), audit.WithSigner(signer), audit.WithSyncDelay(0))
		record(t, l, 0, 1)
		waitWritten(t, l, 1)
		record(t, l, 1, 51)
		waitWritten(t, l, 51)
		closeLog(t, l)
		verifyFile(t, path, 51, signer)
	})
}
