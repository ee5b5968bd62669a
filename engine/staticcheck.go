package engine

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cedar-policy/cedar-go"
)

// Checks a bundle's policies pass before the bundle compiles
// ([StaticCheckError]).
const (
	// CheckCedarSchema: a Cedar policy validates against the Cedar schema
	// of the engine's entities and context ([PolicyModel.CedarSchema]).
	CheckCedarSchema = "cedar-schema"
	// CheckRegoSchema: a Rego module type-checks against the JSON Schema of
	// the input document ([PolicyModel.InputSchema]).
	CheckRegoSchema = "rego-schema"
	// CheckReasonCode: a reason code (Cedar @reason, a Rego deny's "code")
	// is upper snake case.
	CheckReasonCode = "reason-code"
	// CheckPolicyID: policy ids are unique in the bundle.
	CheckPolicyID = "policy-id"
	// CheckAnnotation: a Cedar annotation is one the engine reads, with a
	// value it accepts.
	CheckAnnotation = "annotation"
)

// Problem is one finding of the static checks, at its place in a policy
// source.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"` // 1-based; 0 when unknown
	Col     int    `json:"col,omitempty"`  // 1-based; 0 when unknown
	Check   string `json:"check"`
	Message string `json:"message"`
}

// String is "file:line:col: message (check)".
func (p Problem) String() string {
	pos := p.File
	if p.Line > 0 {
		pos += ":" + strconv.Itoa(p.Line)
		if p.Col > 0 {
			pos += ":" + strconv.Itoa(p.Col)
		}
	}
	return fmt.Sprintf("%s: %s (%s)", pos, p.Message, p.Check)
}

// StaticCheckError is returned by [LoadBundle] for a bundle whose
// policies parse but fail the static checks: an unknown attribute or a type
// mismatch against the schema, a reason code not in upper snake case, a
// policy id used twice, an unknown annotation. A bundle with such a problem
// never compiles, so it is refused by `chaperone test`, `bundle build` (also
// with --skip-tests) and every bundle load.
type StaticCheckError struct {
	Problems []Problem // sorted by file and position
}

func (e *StaticCheckError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "static checks failed:\n" + strings.Join(lines, "\n")
}

func newStaticCheckError(ps []Problem) *StaticCheckError {
	ps = slices.Clone(ps)
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col),
			cmp.Compare(a.Check, b.Check), cmp.Compare(a.Message, b.Message))
	})
	return &StaticCheckError{Problems: slices.CompactFunc(ps, func(a, b Problem) bool { return a == b })}
}

var upperSnake = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)

// validReasonCode reports whether code is upper snake case (TENANT_MISMATCH).
func validReasonCode(code string) bool { return upperSnake.MatchString(code) }

// lineCol returns the 1-based line and column of byte offset off in src.
func lineCol(src []byte, off int) (int, int) {
	off = min(max(off, 0), len(src))
	line := 1 + strings.Count(string(src[:off]), "\n")
	start := strings.LastIndexByte(string(src[:off]), '\n') + 1
	return line, off - start + 1
}

// crossLayerIDs reports a literal Rego policy id that a Cedar policy or a
// rule of another Rego package also uses: reasons name policies by id, so
// each id must name one policy. (Rules of one package may share an id: they
// are one policy written as several rules.)
func crossLayerIDs(c *cedarLayer, rego map[string][]regoID) []Problem {
	var problems []Problem
	owner := map[string]string{} // id → package
	pkgs := make([]string, 0, len(rego))
	for p := range rego {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, pkg := range pkgs {
		for _, r := range rego[pkg] {
			if c != nil {
				if cp, ok := c.byID[cedar.PolicyID(r.id)]; ok {
					problems = append(problems, Problem{File: r.file, Line: r.line, Check: CheckPolicyID,
						Message: fmt.Sprintf("policy id %q is used twice (also at %s)", r.id, positionString(cp.policy.Position()))})
					continue
				}
			}
			if o, ok := owner[r.id]; ok && o != pkg {
				problems = append(problems, Problem{File: r.file, Line: r.line, Check: CheckPolicyID,
					Message: fmt.Sprintf("policy id %q is used twice (also in package %s)", r.id, o)})
				continue
			}
			owner[r.id] = pkg
		}
	}
	return problems
}
