//go:build !unix

package audit

import (
	"context"
	"os"
)

// On systems without flock a file log has one writer: the server.
func lockFile(context.Context, *os.File) error { return nil }
func unlockFile(*os.File) error                { return nil }

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}
