package engine_test

import (
	"os"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine"
)

// BenchmarkLoadBundle compiles the reference bundle, static checks
// included: the cost of a bundle activation.
func BenchmarkLoadBundle(b *testing.B) {
	fsys := os.DirFS("../policies")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := engine.LoadBundle(fsys); err != nil {
			b.Fatal(err)
		}
	}
}
