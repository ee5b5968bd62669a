package bundles_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/chaperone-pdp/chaperone/bundles"
)

// FuzzReadArchive feeds arbitrary bytes to the archive reader and verifies
// whatever it accepts: neither may panic, and an accepted archive writes
// and reads back to the same digest.
func FuzzReadArchive(f *testing.F) {
	a, err := bundles.Build(context.Background(), os.DirFS("testdata/v1"), bundles.BuildOptions{})
	if err != nil {
		f.Fatal(err)
	}
	raw, err := a.Bytes()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := bundles.ReadArchive(bytes.NewReader(data))
		if err != nil {
			return
		}
		_, _ = bundles.Verify(a, bundles.VerifyOptions{})
		_ = a.Signatures()
		again, err := a.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		b, err := bundles.ReadArchive(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if b.Digest() != a.Digest() {
			t.Fatalf("digest %s after a round trip, was %s", b.Digest(), a.Digest())
		}
	})
}
