package redistest_test

import (
	"bufio"
	"net"
	"testing"
	"time"

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
