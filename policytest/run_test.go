package policytest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policytest"
)

func run(t *testing.T, dir string, opts policytest.Options) policytest.Summary {
	t.Helper()
	sum, err := policytest.Run(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Run(%s): %v", dir, err)
	}
	return sum
}

func TestRunPassingSuite(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/pass", policytest.Options{})
	if sum.Passed != 2 || sum.Failed != 0 || sum.Skipped != 1 || !sum.OK() {
		t.Fatalf("summary = %d passed, %d failed, %d skipped", sum.Passed, sum.Failed, sum.Skipped)
	}
	if got, want := sum.Line(), "2 passed, 0 failed, 1 skipped"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	if got := sum.Coverage.Uncovered(); !slices.Equal(got, []string{"never-hit"}) {
		t.Errorf("Uncovered() = %v", got)
	}
	var out bytes.Buffer
	if err := policytest.WriteText(&out, &sum, false); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "2 passed, 0 failed, 1 skipped\n"; got != want {
		t.Errorf("text report = %q, want %q", got, want)
	}
}

func TestRunFailingSuite(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/fail", policytest.Options{})
	if sum.Passed != 1 || sum.Failed != 2 || sum.OK() {
		t.Fatalf("summary = %s", sum.Line())
	}
	var out bytes.Buffer
	if err := policytest.WriteText(&out, &sum, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"FAIL testdata/fail/bad_test.yaml:10 bad/wrong decision: decision: want ALLOW, got DENY; reasons: got [NO_PERMIT]",
		"FAIL testdata/fail/bad_test.yaml:18 bad/wrong obligations: reasons: missing POLICY_PERMIT@somebody-else; got [POLICY_PERMIT@clinician-reads]; auditTags: missing BREAK_GLASS; got [CLINICAL]",
		"coverage (tests per policy id):",
		"  clinician-reads 2",
		"  never-hit       0",
		"  no-night-reads  0",
		"not covered by any test (2): never-hit, no-night-reads",
		"1 passed, 2 failed",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("text report:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestRunFilter(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/pass", policytest.Options{Run: regexp.MustCompile(`ok/at night`)})
	if got := sum.Line(); got != "1 passed, 0 failed" {
		t.Errorf("filtered run = %q", got)
	}
}

func TestRunSuiteErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		dir  string
		want []string
	}{
		{"malformed", "testdata/malformed", []string{
			"broken_test.yaml:3: fixtures.consents",
			`broken_test.yaml:12: test: unknown field "expect"`,
			`broken_test.yaml:15: test "bad request": request: invalid request: action`,
			`broken_test.yaml:26: test "bad decision": decision must be ALLOW or DENY`,
		}},
		{"yaml syntax", "testdata/yamlerror", []string{"syntax_test.yaml:3: yaml: line 3"}},
		{"no suites", "testdata/nosuites", []string{"no _test.yaml suites"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sum, err := policytest.Run(context.Background(), tc.dir, policytest.Options{})
			if err == nil {
				t.Fatalf("Run: no error, summary %s", sum.Line())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if tc.name != "no suites" {
				var se *policytest.SuiteError
				if !errors.As(err, &se) || se.Line == 0 {
					t.Errorf("error is not a *SuiteError with a line: %#v", err)
				}
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/fail", policytest.Options{})
	var out bytes.Buffer
	if err := policytest.WriteJSON(&out, &sum, true); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Passed, Failed, Skipped int
		Suites                  []struct {
			Name  string
			Tests []struct {
				Name, Status, Decision string
				Line                   int
				Diff                   []string
			}
		}
		Coverage  []policytest.PolicyCoverage
		Uncovered []string
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if rep.Passed != 1 || rep.Failed != 2 || len(rep.Suites) != 1 || len(rep.Suites[0].Tests) != 3 {
		t.Fatalf("report = %+v", rep)
	}
	bad := rep.Suites[0].Tests[1]
	if bad.Status != "fail" || bad.Line != 10 || bad.Decision != "DENY" || len(bad.Diff) == 0 {
		t.Errorf("failing test = %+v", bad)
	}
	if !slices.Equal(rep.Uncovered, []string{"never-hit", "no-night-reads"}) || len(rep.Coverage) != 3 {
		t.Errorf("coverage = %v, uncovered = %v", rep.Coverage, rep.Uncovered)
	}
}

func TestWriteJUnit(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/pass", policytest.Options{})
	var out bytes.Buffer
	if err := policytest.WriteJUnit(&out, &sum); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Skipped *struct{} `xml:"skipped"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not XML: %v\n%s", err, out.String())
	}
	if rep.Tests != 3 || rep.Failures != 0 || rep.Skipped != 1 || len(rep.Suites) != 1 || rep.Suites[0].Name != "ok" {
		t.Fatalf("report = %+v", rep)
	}
	if c := rep.Suites[0].Cases[2]; c.Name != "parked" || c.Skipped == nil {
		t.Errorf("skipped case = %+v", c)
	}
}

// TestRunFilterLeavesOutEmptySuites: --run selecting the tests of one
// suite reports that suite only, in every format.
func TestRunFilterLeavesOutEmptySuites(t *testing.T) {
	t.Parallel()
	all := run(t, "testdata/filter", policytest.Options{})
	if len(all.Suites) != 2 || all.Passed != 2 {
		t.Fatalf("unfiltered: %d suites, %s", len(all.Suites), all.Line())
	}
	for _, tc := range []struct{ re, suite string }{
		{`^writes/`, "writes"},
		{`clinician reads`, "reads"},
	} {
		sum := run(t, "testdata/filter", policytest.Options{Run: regexp.MustCompile(tc.re)})
		var junit, js bytes.Buffer
		if err := policytest.WriteJUnit(&junit, &sum); err != nil {
			t.Fatal(err)
		}
		if err := policytest.WriteJSON(&js, &sum, false); err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Suites []struct {
				Name  string `xml:"name,attr"`
				Tests int    `xml:"tests,attr"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal(junit.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Suites) != 1 || rep.Suites[0].Name != tc.suite || rep.Suites[0].Tests != 1 {
			t.Errorf("--run %s: junit suites %+v, want only %s with its test", tc.re, rep.Suites, tc.suite)
		}
		var jrep struct{ Suites []struct{ Name string } }
		if err := json.Unmarshal(js.Bytes(), &jrep); err != nil {
			t.Fatal(err)
		}
		if len(jrep.Suites) != 1 || jrep.Suites[0].Name != tc.suite {
			t.Errorf("--run %s: json suites %+v, want only %s", tc.re, jrep.Suites, tc.suite)
		}
	}
	none := run(t, "testdata/filter", policytest.Options{Run: regexp.MustCompile(`nothing matches`)})
	var junit bytes.Buffer
	if err := policytest.WriteJUnit(&junit, &none); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(junit.String(), "<testsuite ") {
		t.Errorf("no test selected, yet the junit report has a suite:\n%s", junit.String())
	}
}

func TestExactAssertions(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/exact", policytest.Options{})
	got := map[string]string{}
	for _, r := range sum.Suites[0].Tests {
		got[r.Name] = strings.Join(r.Diff, "; ")
	}
	want := map[string]string{
		"exactly these":                           "",
		"a mask beyond the wanted ones":           "maskPaths: unexpected Observation.note",
		"no obligations wanted":                   "maskPaths: unexpected Observation.note; auditTags: unexpected CLINICAL",
		"a reason beyond the wanted ones":         "reasons: missing @somebody-else; got [POLICY_PERMIT@clinician-reads]; reasons: unexpected [POLICY_PERMIT@clinician-reads]",
		"perEntryCheck wanted":                    "perEntryCheck: want true, got false",
		"no mask of one kind only":                "maskPaths: unexpected Observation.note",
		"exactly these tags, masks unconstrained": "",
		"absent things that are absent":           "",
		"absent things that are present": "reasons: present but absent wanted: [POLICY_PERMIT@clinician-reads]; " +
			"maskPaths: present but absent wanted: Observation.note; auditTags: present but absent wanted: CLINICAL",
	}
	if len(got) != len(want) {
		t.Errorf("%d tests ran, want %d", len(got), len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: diff %q, want %q", name, got[name], w)
		}
	}
}

func TestExactMalformed(t *testing.T) {
	t.Parallel()
	const req = "{subject: {kind: practitioner, id: Practitioner/p1, roles: [clinician], organization: Organization/o1}, action: read, resource: {type: Observation, id: o1, organization: Organization/o1}, purposeOfUse: TREAT}"
	for _, tc := range []struct {
		name, want, err string
	}{
		{"unknown exact kind", "{decision: ALLOW, exact: [masks]}",
			`x_test.yaml:5: test "t": exact: "masks" is not one of reasons, obligations, maskPaths, auditTags, redactLabels, perEntryCheck`},
		{"unknown absent key", "{decision: ALLOW, absent: {tags: [X]}}",
			`x_test.yaml:5: test "t": absent: unknown field "tags" (want one of reasons, maskPaths, auditTags, redactLabels)`},
		{"absent obligations key", "{decision: ALLOW, absent: {perEntryCheck: true}}",
			`x_test.yaml:5: test "t": absent: unknown field "perEntryCheck"`},
		{"absent reasons not a list", "{decision: ALLOW, absent: {reasons: {code: X}}}",
			`x_test.yaml:5: test "t": absent: reasons must be a list`},
		{"absent label without its shape", "{decision: ALLOW, absent: {redactLabels: [{cod: X}]}}",
			`x_test.yaml:5: test "t": absent: redactLabel: unknown field "cod"`},
		{"unknown want key", "{decision: ALLOW, noMask: true}",
			`x_test.yaml:5: test "t": want: unknown field "noMask" (want one of decision, reasons, obligations, exact, absent)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, f := range []string{"manifest.yaml", "p.cedar"} {
				data, err := os.ReadFile("testdata/exact/" + f)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			suite := "name: x\ntests:\n  - name: t\n    request: " + req + "\n    want: " + tc.want + "\n"
			if err := os.WriteFile(filepath.Join(dir, "x_test.yaml"), []byte(suite), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := policytest.Run(context.Background(), dir, policytest.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Run = %v\nwant %s", err, tc.err)
			}
		})
	}
}

// TestFirstFailurePrefersInvolvedTests: after a baseline, the tests that
// involved a named policy run first.
func TestFirstFailurePrefersInvolvedTests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := engine.LoadBundle(os.DirFS("testdata/fail"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policytest.Prepare(ctx, "testdata/fail")
	if err != nil {
		t.Fatal(err)
	}
	first, failed, err := p.Baseline(ctx, b)
	if err != nil || !failed || first.Name != "wrong decision" {
		t.Fatalf("Baseline = %q, %v, %v; want the first failing test", first.Name, failed, err)
	}
	for _, tt := range []struct {
		policies []string
		want     string
	}{
		{nil, "wrong decision"},
		{[]string{"clinician-reads"}, "wrong obligations"},
		{[]string{"no-such-policy"}, "wrong decision"},
	} {
		res, failed, err := p.NewRunner().FirstFailure(ctx, b, tt.policies...)
		if err != nil || !failed || res.Name != tt.want {
			t.Errorf("FirstFailure(%v) = %q, %v, %v; want %q", tt.policies, res.Name, failed, err, tt.want)
		}
	}
}

// TestRunFailureNamesLayerError: a test failing on a POLICY_ERROR says
// what the layer's error was, as check --explain does.
func TestRunFailureNamesLayerError(t *testing.T) {
	t.Parallel()
	sum := run(t, "testdata/policyerror", policytest.Options{})
	if sum.Failed != 1 {
		t.Fatalf("summary = %s", sum.Line())
	}
	var out bytes.Buffer
	if err := policytest.WriteText(&out, &sum, false); err != nil {
		t.Fatal(err)
	}
	want := "FAIL testdata/policyerror/e_test.yaml:3 e/reads a device: decision: want ALLOW, got DENY; reasons: got [POLICY_ERROR]; cedar error: cedar: "
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "overflow") {
		t.Errorf("report:\n%s\nwant a line starting %q naming the overflow", out.String(), want)
	}
}
