package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/mutate"
	"github.com/chaperone-pdp/chaperone/policytest"
)

func newTestCmd(e *env) *cobra.Command {
	var (
		format    string
		runExpr   string
		coverage  bool
		mutateRun bool
		mutateMin float64
		verbose   bool
		checkEq   bool
	)
	cmd := &cobra.Command{
		Use:   "test [DIR] [--format text|junit|json] [--run REGEXP] [--coverage] [--mutate [--mutate-min P] [--check-equivalent]]",
		Short: "Run the policy test suites (*_test.yaml) of a bundle directory",
		Long: `test runs every *_test.yaml suite under DIR (default policies) against the
bundle in DIR, through the real engine with the suites' fixtures (FHIR
consents, break-glass grants, vendor agreements) in in-memory stores.

Before any test runs the bundle must pass the static checks, as at bundle
build and every load: Cedar policies validated against the schema of what
the engine gives them, Rego modules type-checked against the input schema
(chaperone schema prints both), reason codes upper snake case, policy ids
unique, annotations known; each problem is reported as
"file:line:col: message (check)" and the command exits 2.

The text report has one line per failing test, with what differed, and ends
with the line "N passed, N failed" (", N skipped" when any). --format json or
junit writes the report to stdout for CI and the final line to stderr.
--run runs the tests whose "suite/test" name matches REGEXP. --coverage
counts, per policy id, the tests whose decision involved it, and lists the
policies no test reaches.

--mutate measures whether the suites would notice a broken rule: it makes
mutants of every policy, one change each, and runs the suites against every
mutant in process (in parallel, tests stopping at the first failure). Cedar
mutations: drop a conjunct or a disjunct, negate a condition, swap == and
!=, < and <=, > and >=, in and ==, contains/containsAny/containsAll, drop an
element of a literal set, turn permit into forbid and back, drop an
obligation annotation (@mask, @audit_tag, @redact_label, one value of its
list, @overrides_consent). Rego mutations: drop a body expression, negate it,
swap a comparison, drop an element of a literal set or array (or an entry
of a rule's object value), drop an entry of the obligations. A mutant that
no test fails survives and is reported as "file:line:col: mutation:
original text"; the report ends with "mutants: K killed of N (P%)", N
counting neither mutants that do not compile nor equivalent ones (a
mutant the static checks refuse is killed "by static checks"). A
comment "mutate: equivalent [OP [TEXT]] — reason" (// in Cedar, # in Rego)
at the end of a line, or on comment lines just before it, marks its mutants
(only operator OP's, when named, of original text TEXT) as equivalent: listed
with the reason and not scored; --check-equivalent runs them too and reports
those a test kills (their mark is wrong). --format json writes every
mutant with its status. -v also lists killed and non-compiling mutants.
--mutate-min P exits 1 when the score is below P percent (default 0).
The suites must pass against the bundle as written.

Exit 0 when every test passes, 1 when any fails (or, with --mutate, when
the score is below --mutate-min), 2 for an error in a suite file (reported
with file and line), a bundle that does not compile or fails the static
checks, or bad usage.

Suite format (each key not listed is an error with file and line; want's
reasons and obligations are subset matches, exact and absent say what
must not be there):

` + indent(policytest.SuiteFormat),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "policies"
			if len(args) == 1 {
				dir = args[0]
			}
			if format != "text" && format != "json" && format != "junit" {
				return usageErrorf("--format %q: want text, junit or json", format)
			}
			if mutateRun {
				if format == "junit" {
					return usageErrorf("--mutate: --format junit is not supported (want text or json)")
				}
				if runExpr != "" || coverage {
					return usageErrorf("--mutate runs every test; --run and --coverage do not apply")
				}
				if mutateMin < 0 || mutateMin > 100 {
					return usageErrorf("--mutate-min %v: want a percentage from 0 to 100", mutateMin)
				}
				return runMutate(cmd.Context(), e, dir, format, mutateMin, verbose, checkEq)
			}
			if cmd.Flags().Changed("mutate-min") || checkEq {
				return usageErrorf("--mutate-min and --check-equivalent need --mutate")
			}
			var opts policytest.Options
			if runExpr != "" {
				re, err := regexp.Compile(runExpr)
				if err != nil {
					return usageErrorf("--run: %v", err)
				}
				opts.Run = re
			}
			sum, err := policytest.Run(cmd.Context(), dir, opts)
			if err != nil {
				return usageErrorf("%v", err)
			}
			switch format {
			case "json":
				err = policytest.WriteJSON(e.stdout, &sum, coverage)
			case "junit":
				err = policytest.WriteJUnit(e.stdout, &sum)
			default:
				err = policytest.WriteText(e.stdout, &sum, coverage)
			}
			if err != nil {
				return err
			}
			if format != "text" {
				fmt.Fprintln(e.stderr, sum.Line())
				if coverage && format == "junit" {
					if u := sum.Coverage.Uncovered(); len(u) > 0 {
						fmt.Fprintf(e.stderr, "not covered by any test: %v\n", u)
					}
				}
			}
			if !sum.OK() {
				return failedf("%d policy tests failed", sum.Failed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "report format: text, junit or json")
	cmd.Flags().StringVar(&runExpr, "run", "", "run only the tests whose suite/test name matches this regular expression")
	cmd.Flags().BoolVar(&coverage, "coverage", false, "report how many tests reach each policy id")
	cmd.Flags().BoolVar(&mutateRun, "mutate", false, "score the suites by the policy mutants they kill")
	cmd.Flags().Float64Var(&mutateMin, "mutate-min", 0, "with --mutate: exit 1 when fewer than this percentage of mutants are killed")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "with --mutate: list killed and non-compiling mutants too")
	cmd.Flags().BoolVar(&checkEq, "check-equivalent", false, "with --mutate: also run the mutants marked equivalent, report those a test kills and exit 1 if any")
	return cmd
}

// indent indents every line of s by two spaces, for a block in help text.
func indent(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// runMutate is `chaperone test --mutate`.
func runMutate(ctx context.Context, e *env, dir, format string, min float64, verbose, checkEq bool) error {
	// Thousands of decisions on a small heap: collecting less often saves
	// about a quarter of the CPU time. GOGC, when set, wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	rep, err := mutate.Run(ctx, dir, mutate.Options{CheckEquivalent: checkEq})
	if err != nil {
		return usageErrorf("%v", err)
	}
	if format == "json" {
		err = mutate.WriteJSON(e.stdout, rep)
		fmt.Fprintln(e.stderr, rep.Line())
	} else {
		err = mutate.WriteText(e.stdout, rep, verbose)
	}
	if err != nil {
		return err
	}
	if rep.Score() < min {
		return failedf("mutation score %.1f%% is below --mutate-min %v", rep.Score(), min)
	}
	if checkEq {
		// A mark a test contradicts hides a mutant from the score: fail,
		// like a score below the gate.
		wrong := 0
		for _, o := range rep.Outcomes {
			if o.Status == mutate.Equivalent && o.KilledBy != "" {
				wrong++
			}
		}
		if wrong > 0 {
			return failedf("%d mutants marked equivalent are killed by a test: their marks are wrong", wrong)
		}
	}
	return nil
}
