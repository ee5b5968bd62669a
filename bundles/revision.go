package bundles

import (
	"errors"
	"fmt"
	"strings"
)

// ErrDowngrade matches a [*DowngradeError].
var ErrDowngrade = errors.New("bundle revision is not newer than the active one")

// DowngradeError is a bundle refused because its revision is not newer
// than the active bundle's: activating it would roll the policy back.
// [WithAllowDowngrade] permits it deliberately.
type DowngradeError struct {
	Revision, Active string
}

func (e *DowngradeError) Error() string {
	return fmt.Sprintf("bundle revision %q is not newer than the active %q (a rollback: allow it deliberately with --allow-downgrade)", e.Revision, e.Active)
}

// Unwrap makes a DowngradeError match [ErrDowngrade].
func (e *DowngradeError) Unwrap() error { return ErrDowngrade }

// CompareRevisions orders bundle revisions by their segments: runs of
// digits compare as numbers and other runs as text, left to right, so
// "2026.11.25-2" < "2026.12.01-1" and "2026.01-9" < "2026.01-10". A
// revision that is a prefix of another is older. It returns -1, 0 or +1.
func CompareRevisions(a, b string) int {
	for a != "" && b != "" {
		ra, restA := nextRun(a)
		rb, restB := nextRun(b)
		if c := compareRun(ra, rb); c != 0 {
			return c
		}
		a, b = restA, restB
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	default:
		return 1
	}
}

// nextRun splits off the leading run of digits or of non-digits.
func nextRun(s string) (run, rest string) {
	digit := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == digit {
		i++
	}
	return s[:i], s[i:]
}

func compareRun(a, b string) int {
	if !isDigit(a[0]) || !isDigit(b[0]) {
		return strings.Compare(a, b)
	}
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
