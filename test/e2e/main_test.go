package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMain gives the processes the tests start a configuration directory
// of their own: serve with Redis and no --encryption-key-file generates its
// key set under $XDG_CONFIG_HOME, which must not be the user's (replicas
// started by one test run share it, as replicas share a key in production).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chaperone-e2e-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	if bin, err := buildBinary(); err == nil && code == 0 {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}
