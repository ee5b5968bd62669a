package engine

import (
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir/elements"
)

// TestCheckMaskPathEveryElement: every element path of every resource type
// of R4 and R5 is a valid mask path, and the same path with its last
// segment misspelt is refused unless the misspelling is itself an element.
func TestCheckMaskPathEveryElement(t *testing.T) {
	t.Parallel()
	resolves := func(p string) bool {
		for _, v := range []elements.Version{elements.R4, elements.R5} {
			if _, ok := elements.For(v).Lookup(p); ok {
				return true
			}
		}
		return false
	}
	n := 0
	for _, v := range []elements.Version{elements.R4, elements.R5} {
		ix := elements.For(v)
		for _, p := range ix.Paths() {
			typ, _, _ := strings.Cut(p, ".")
			if !ix.IsResource(typ) {
				continue
			}
			n++
			if err := checkMaskPath(p); err != nil {
				t.Errorf("%s: %v", v, err)
			}
			for _, bad := range []string{p + "x", p + ".", p + "..id", strings.ToUpper(p[:1]) + strings.ToLower(p[1:]) + "Q"} {
				if !resolves(bad) && checkMaskPath(bad) == nil {
					t.Errorf("%s: %q accepted", v, bad)
				}
			}
		}
	}
	if n < 10000 {
		t.Errorf("only %d resource element paths checked", n)
	}
}
