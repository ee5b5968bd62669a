package policytest_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policytest"
)

// TestSuiteFormatIsTrue: the documented suite format is a suite that
// passes against the reference bundle with its fixtures, and
// policies/README.md shows it as it is.
func TestSuiteFormatIsTrue(t *testing.T) {
	t.Parallel()
	b, err := engine.LoadBundle(os.DirFS("../policies"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fixtures, err := filepath.Abs("../policies/fixtures")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fixtures, filepath.Join(dir, "fixtures")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "doc_test.yaml"), []byte(policytest.SuiteFormat), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := policytest.Run(context.Background(), dir, policytest.Options{Bundle: b})
	if err != nil {
		t.Fatalf("the documented format does not parse: %v", err)
	}
	if sum.Passed != 0 || sum.Skipped != 1 {
		t.Fatalf("documented suite: %s, want its one test skipped", sum.Line())
	}
	// Unskipped, the example must pass.
	unskipped := strings.Replace(policytest.SuiteFormat, "    skip:", "    # skip:", 1)
	if err := os.WriteFile(filepath.Join(dir, "doc_test.yaml"), []byte(unskipped), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err = policytest.Run(context.Background(), dir, policytest.Options{Bundle: b})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed != 1 {
		var out bytes.Buffer
		_ = policytest.WriteText(&out, &sum, false)
		t.Fatalf("the documented example fails against the reference bundle:\n%s", out.String())
	}
	readme, err := os.ReadFile("../policies/README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("```yaml\n"+policytest.SuiteFormat+"```\n")) {
		t.Error("policies/README.md does not show policytest.SuiteFormat verbatim in a ```yaml block")
	}
}
