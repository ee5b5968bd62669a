// Package redistest starts real redis-server processes for tests.
//
// Tests that need Redis call [Start], which runs redis-server on a free
// loopback port with persistence off (--save "" --appendonly no), waits
// until it answers PING and stops it when the test ends:
//
//	addr, _ := redistest.Start(t)
//	rdb := redis.NewClient(&redis.Options{Addr: addr})
//
// When redis-server is not on PATH the test is skipped, unless the
// environment variable CI is "true", where it fails: CI must run every test.
// Fault tests use [Server] ([StartServer]) to [Server.Kill] and
// [Server.Restart] the process on the same port.
//
// [StartCluster] starts a Redis Cluster of 3 masters and 3 replicas
// (redis-cli --cluster create, cluster-node-timeout [ClusterNodeTimeout],
// cluster-require-full-coverage off) and [StartSentinel] a master, a
// replica and 3 sentinels (down-after [SentinelDownAfter]); both wait
// until the topology is in sync and stop with the test. A Cluster starts in
// about 2 s and fails a killed master over in about 2.5 s. [StartProxy]
// puts a TCP proxy in front of a server that [Proxy.Cut] black-holes, for
// partition tests.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Bounded waits.
const (
	startTimeout = 10 * time.Second
	stopTimeout  = 5 * time.Second
	startTries   = 3 // a free port can be taken between probing and binding
)

// Server is one redis-server process bound to 127.0.0.1.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	conf string   // a config file given first (sentinel), or ""
	args []string // extra arguments (cluster, replica, sentinel mode)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *lockedWriter // redis-server's output, for failure messages
}

// Start runs redis-server on a free loopback port and returns its address
// ("127.0.0.1:PORT") and a stop function (also registered with t.Cleanup;
// calling it twice is harmless).
func Start(t testing.TB) (addr string, stop func()) {
	t.Helper()
	s := StartServer(t)
	return s.Addr(), s.Stop
}

// StartServer is [Start] returning the [Server], for tests that kill and
// restart it.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return startServer(t, nil)
}

// configure sets a server's conf and args once its port and directory are
// known; nil for a plain server.
type configure func(s *Server) error

// lookBin finds redis-server, or skips (fails when CI=true).
func lookBin(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found on PATH (required when CI=true): %v", name, err)
		}
		t.Skipf("%s not found on PATH: %v", name, err)
	}
	return bin
}

// startServer starts redis-server on a free port, configured by extra (nil
// for a plain server).
func startServer(t testing.TB, extra configure) *Server {
	t.Helper()
	s := &Server{t: t, bin: lookBin(t, "redis-server"), dir: t.TempDir()}
	var lastErr error
	for range startTries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.port = port
		if extra != nil {
			if err := extra(s); err != nil {
				t.Fatalf("redistest: %v", err)
			}
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (kept across restarts).
func (s *Server) Dir() string { return s.dir }

// Addr is the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Output is what redis-server has printed (warnings and errors).
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Kill stops the server abruptly (SIGKILL) and waits until it has exited
// and its port is closed.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	s.wait()
}

// Restart starts the server again on the same port after [Server.Kill] or
// [Server.Stop] (stopping it first if it runs). The data set starts empty:
// persistence is off.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: restart on port %d: %v", s.port, err)
		}
		time.Sleep(50 * time.Millisecond) // the port may linger briefly
	}
}

// Stop terminates the server (SIGTERM, then SIGKILL after a bounded wait).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
	}
	s.wait()
}

// wait reaps the process; s.mu is held.
func (s *Server) wait() {
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.t.Errorf("redistest: redis-server on port %d did not exit", s.port)
	}
	s.cmd = nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &lockedWriter{w: &bytes.Buffer{}}
	var args []string
	if s.conf != "" {
		args = append(args, s.conf) // a config file: first
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--protected-mode", "yes",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := waitReady(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on port %d: %w; output:\n%s", s.port, err, out.String())
	}
	s.cmd, s.done, s.out = cmd, done, out
	return nil
}

// errExited means redis-server exited before answering PING.
var errExited = errors.New("exited before it answered PING")

// waitReady polls PING until +PONG, the process exits or startTimeout passes.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExited
		default:
		}
		if last = ping(addr); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %s: %w", startTimeout, last)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
