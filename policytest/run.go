package policytest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Options configure [Run].
type Options struct {
	// Bundle is the compiled bundle to test; nil compiles the bundle in
	// the directory given to Run.
	Bundle *engine.Bundle
	// Run selects the tests whose "suite/test" name matches; nil runs all.
	// Tests not selected are not counted, and a suite none of whose tests
	// is selected is left out of the [Summary] (and so of every report).
	Run *regexp.Regexp
}

// Status is the outcome of one test.
type Status string

// Test outcomes.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is the outcome of one test.
type Result struct {
	Suite    string
	Name     string
	File     string
	Line     int
	Status   Status
	Diff     []string // what differed, one entry per difference
	Skip     string   // why it was skipped
	Response *chaperonev1.CheckResponse
	Trace    *engine.Trace
	Policies []string // policy ids the decision involved
	Duration time.Duration
}

// SuiteResult is the outcome of one suite.
type SuiteResult struct {
	Name  string
	File  string
	Tests []Result
}

// Summary is the outcome of a run.
type Summary struct {
	Suites                  []SuiteResult
	Passed, Failed, Skipped int
	Coverage                Coverage
}

// OK reports whether no test failed.
func (s *Summary) OK() bool { return s.Failed == 0 }

// Line is the final line of every report: "N passed, N failed", plus
// ", N skipped" when any test was skipped.
func (s *Summary) Line() string {
	l := fmt.Sprintf("%d passed, %d failed", s.Passed, s.Failed)
	if s.Skipped > 0 {
		l += fmt.Sprintf(", %d skipped", s.Skipped)
	}
	return l
}

// Run runs every suite (*_test.yaml) under dir against the bundle in dir
// (or opts.Bundle). Suite files are parsed and their fixtures loaded before
// any test runs; problems there are returned as an error (every
// [*SuiteError] found, joined) with an empty summary. Failing tests are not
// an error: see [Summary.Failed].
func Run(ctx context.Context, dir string, opts Options) (Summary, error) {
	b := opts.Bundle
	if b == nil {
		var err error
		if b, err = engine.LoadBundle(os.DirFS(dir)); err != nil {
			return Summary{}, fmt.Errorf("load bundle %s: %w", dir, err)
		}
	}
	p, err := Prepare(ctx, dir)
	if err != nil {
		return Summary{}, err
	}
	engines := p.engines(b)

	cov := newCoverage(b, dir)
	var sum Summary
	for i, s := range p.suites {
		sr := SuiteResult{Name: s.Name, File: s.File}
		for j := range s.Tests {
			c := &s.Tests[j]
			if opts.Run != nil && !opts.Run.MatchString(s.Name+"/"+c.Name) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return sum, err
			}
			r := runCase(ctx, engines[i], s, c)
			switch r.Status {
			case Pass:
				sum.Passed++
			case Fail:
				sum.Failed++
			case Skip:
				sum.Skipped++
			}
			cov.record(r.Policies)
			sr.Tests = append(sr.Tests, r)
		}
		if len(sr.Tests) > 0 {
			sum.Suites = append(sum.Suites, sr)
		}
	}
	sum.Coverage = cov.result()
	return sum, nil
}

func runCase(ctx context.Context, eng *engine.Engine, s *Suite, c *Case) Result {
	r := Result{Suite: s.Name, Name: c.Name, File: s.File, Line: c.Line}
	if c.Skip != "" {
		r.Status, r.Skip = Skip, c.Skip
		return r
	}
	start := time.Now()
	resp, trace := eng.Explain(ctx, c.Request)
	r.Duration = time.Since(start)
	r.Response, r.Trace = resp, trace
	r.Policies = involvedPolicies(resp, trace)
	r.Diff = compare(&c.Want, resp)
	r.Status = Pass
	if len(r.Diff) > 0 {
		r.Status = Fail
		r.Diff = append(r.Diff, traceErrors(trace)...)
	}
	return r
}

// traceErrors is why a layer failed (a POLICY_ERROR, CONSENT_UNAVAILABLE,
// …), as `check --explain` shows it: a failing test says what went wrong,
// not only the reason code.
func traceErrors(t *engine.Trace) []string {
	if t == nil {
		return nil
	}
	var out []string
	if t.Consent != nil && t.Consent.Error != "" {
		out = append(out, "consent error: "+t.Consent.Error)
	}
	for _, l := range t.Layers {
		if l.Error != "" {
			out = append(out, l.Layer+" error: "+l.Error)
		}
	}
	return out
}

// involvedPolicies lists the policy ids a decision involved: those named by
// its reasons and, from the trace, every policy a layer permitted or denied
// with (a permit overruled by a forbid still counts as exercised).
func involvedPolicies(resp *chaperonev1.CheckResponse, trace *engine.Trace) []string {
	var ids []string
	add := func(id string) {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, r := range resp.GetReasons() {
		add(r.GetPolicyId())
	}
	if trace != nil {
		for _, l := range trace.Layers {
			for _, p := range l.Permits {
				add(p)
			}
			for _, d := range l.Denies {
				id, _, _ := strings.Cut(d, " (")
				add(id)
			}
			// An obligation-only policy is involved when its obligations
			// join an ALLOW.
			if resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW {
				for _, o := range l.ObligationOnly {
					add(o)
				}
			}
		}
	}
	return ids
}

// compare lists what differs between want and the response.
func compare(want *Want, resp *chaperonev1.CheckResponse) []string {
	var diff []string
	got := strings.TrimPrefix(resp.GetDecision().String(), "DECISION_")
	if got != want.Decision {
		diff = append(diff, fmt.Sprintf("decision: want %s, got %s", want.Decision, got))
	}
	var missing []string
	for _, w := range want.Reasons {
		found := slices.ContainsFunc(resp.GetReasons(), w.matches)
		if !found {
			missing = append(missing, w.String())
		}
	}
	if len(missing) > 0 || (len(diff) > 0 && len(want.Reasons) == 0) {
		msg := "reasons:"
		if len(missing) > 0 {
			msg += " missing " + strings.Join(missing, ", ") + ";"
		}
		diff = append(diff, msg+" got "+formatReasons(resp.GetReasons()))
	}
	if want.ExactReasons {
		var extra []string
		for _, r := range resp.GetReasons() {
			if !slices.ContainsFunc(want.Reasons, func(w WantReason) bool { return w.matches(r) }) {
				extra = append(extra, formatReasons([]*chaperonev1.Reason{r}))
			}
		}
		if len(extra) > 0 {
			diff = append(diff, "reasons: unexpected "+strings.Join(extra, ", "))
		}
	}
	var present []string
	for _, w := range want.Absent.Reasons {
		for _, r := range resp.GetReasons() {
			if w.matches(r) {
				present = append(present, formatReasons([]*chaperonev1.Reason{r}))
			}
		}
	}
	if len(present) > 0 {
		diff = append(diff, "reasons: present but absent wanted: "+strings.Join(slices.Compact(present), ", "))
	}
	o, g := want.Obligations, resp.GetObligations()
	var wl, gl []string
	for _, l := range o.GetRedactLabels() {
		wl = append(wl, labelKey(l))
	}
	for _, l := range g.GetRedactLabels() {
		gl = append(gl, labelKey(l))
	}
	diff = appendMissing(diff, "maskPaths", o.GetMaskPaths(), g.GetMaskPaths())
	diff = appendMissing(diff, "auditTags", o.GetAuditTags(), g.GetAuditTags())
	diff = appendMissing(diff, "redactLabels", wl, gl)
	if want.ExactMaskPaths {
		diff = appendUnexpected(diff, "maskPaths", o.GetMaskPaths(), g.GetMaskPaths())
	}
	if want.ExactAuditTags {
		diff = appendUnexpected(diff, "auditTags", o.GetAuditTags(), g.GetAuditTags())
	}
	if want.ExactRedactLabels {
		diff = appendUnexpected(diff, "redactLabels", wl, gl)
	}
	if want.ExactPerEntryCheck {
		if o.GetPerEntryCheck() != g.GetPerEntryCheck() {
			diff = append(diff, fmt.Sprintf("perEntryCheck: want %t, got %t", o.GetPerEntryCheck(), g.GetPerEntryCheck()))
		}
	} else if o.GetPerEntryCheck() && !g.GetPerEntryCheck() {
		diff = append(diff, "perEntryCheck: want true, got false")
	}
	var al []string
	for _, l := range want.Absent.RedactLabels {
		al = append(al, labelKey(l))
	}
	diff = appendPresent(diff, "maskPaths", want.Absent.MaskPaths, g.GetMaskPaths())
	diff = appendPresent(diff, "auditTags", want.Absent.AuditTags, g.GetAuditTags())
	diff = appendPresent(diff, "redactLabels", al, gl)
	return diff
}

func (w WantReason) matches(r *chaperonev1.Reason) bool {
	return (w.Code == "" || r.GetCode() == w.Code) && (w.PolicyID == "" || r.GetPolicyId() == w.PolicyID)
}

func labelKey(c *chaperonev1.Coding) string { return c.GetSystem() + "|" + c.GetCode() }

// appendPresent reports what got has of absent.
func appendPresent(diff []string, what string, absent, got []string) []string {
	var present []string
	for _, a := range absent {
		if slices.Contains(got, a) {
			present = append(present, a)
		}
	}
	if len(present) == 0 {
		return diff
	}
	return append(diff, fmt.Sprintf("%s: present but absent wanted: %s", what, strings.Join(present, ", ")))
}

// appendUnexpected reports what got has beyond want.
func appendUnexpected(diff []string, what string, want, got []string) []string {
	var extra []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(extra) == 0 {
		return diff
	}
	return append(diff, fmt.Sprintf("%s: unexpected %s", what, strings.Join(extra, ", ")))
}

func appendMissing(diff []string, what string, want, got []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 {
		return diff
	}
	return append(diff, fmt.Sprintf("%s: missing %s; got [%s]", what, strings.Join(missing, ", "), strings.Join(got, ", ")))
}

func formatReasons(rs []*chaperonev1.Reason) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.GetCode()
		if r.GetPolicyId() != "" {
			parts[i] += "@" + r.GetPolicyId()
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
