package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/policytest"
)

func newTestCmd(e *env) *cobra.Command {
	var (
		format   string
		runExpr  string
		coverage bool
	)
	cmd := &cobra.Command{
		Use:   "test [DIR] [--format text|junit|json] [--run REGEXP] [--coverage]",
		Short: "Run the policy test suites (*_test.yaml) of a bundle directory",
		Long: `test runs every *_test.yaml suite under DIR (default policies) against the
bundle in DIR, through the real engine with the suites' fixtures (FHIR
consents, break-glass grants, vendor agreements) in in-memory stores.

The text report has one line per failing test, with what differed, and ends
with the line "N passed, N failed" (", N skipped" when any). --format json or
junit writes the report to stdout for CI and the final line to stderr.
--run runs the tests whose "suite/test" name matches REGEXP. --coverage
counts, per policy id, the tests whose decision involved it, and lists the
policies no test reaches.

Exit 0 when every test passes, 1 when any fails, 2 for an error in a suite
file (reported with file and line) or bad usage.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "policies"
			if len(args) == 1 {
				dir = args[0]
			}
			if format != "text" && format != "json" && format != "junit" {
				return usageErrorf("--format %q: want text, junit or json", format)
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
	return cmd
}
