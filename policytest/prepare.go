package policytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Prepared is the suites of a bundle directory, parsed, with their
// fixtures loaded into in-memory stores: what it takes to run them against
// many bundles (as `chaperone test --mutate` does) without reading a file
// again.
type Prepared struct {
	suites []*Suite
	stores []*stores
	// involved[i][j]: the policy ids test j of suite i involved when
	// [Prepared.Baseline] ran it.
	involved [][][]string
}

// Prepare parses every suite (*_test.yaml) under dir and loads its
// fixtures. Problems are returned as an error (every [*SuiteError] found,
// joined).
func Prepare(ctx context.Context, dir string) (*Prepared, error) {
	files, err := FindSuites(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no %s suites under %s", SuiteSuffix, dir)
	}
	v, err := validation.New()
	if err != nil {
		return nil, err
	}
	p := &Prepared{}
	var errs []error
	for _, f := range files {
		s, err := ParseSuite(f, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st, err := loadFixtures(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.suites = append(p.suites, s)
		p.stores = append(p.stores, st)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Cases counts the tests of the prepared suites that are not skipped.
func (p *Prepared) Cases() int {
	n := 0
	for _, s := range p.suites {
		for _, c := range s.Tests {
			if c.Skip == "" {
				n++
			}
		}
	}
	return n
}

// engines returns one engine per suite, deciding with b at the suite's
// clock over its fixtures, with no memo (each request is decided afresh).
func (p *Prepared) engines(b *engine.Bundle) []*engine.Engine {
	out := make([]*engine.Engine, len(p.suites))
	for i, s := range p.suites {
		st, now := p.stores[i], s.Now
		e := engine.New(engine.StoreConsents(st.consents),
			engine.WithGrants(st.grants), engine.WithAgreements(st.agreements), engine.WithRelationships(st.relationships),
			engine.WithClock(func() time.Time { return now }), engine.WithRequestTime(),
			engine.WithDecisionIDs(func() string { return "policytest" }),
			engine.WithMemo(0))
		if b != nil {
			e.Activate(b)
		}
		out[i] = e
	}
	return out
}

// Runner runs prepared suites against one bundle after another. A Runner
// is used by one goroutine at a time; make one per worker with
// [Prepared.NewRunner].
type Runner struct {
	p       *Prepared
	engines []*engine.Engine
	order   []caseRef // the order tests are tried in: the last failing one first
}

type caseRef struct{ suite, test int }

// NewRunner returns a runner with engines of its own.
func (p *Prepared) NewRunner() *Runner {
	r := &Runner{p: p, engines: p.engines(nil)}
	for i, s := range p.suites {
		for j, c := range s.Tests {
			if c.Skip == "" {
				r.order = append(r.order, caseRef{i, j})
			}
		}
	}
	return r
}

// Baseline runs every test against b, the bundle as written, and returns
// the first that fails (failed false when all pass). It also records the
// policy ids each test's decision involves, which [Runner.FirstFailure]
// uses to try first the tests that reach a changed policy; call it before
// [Prepared.NewRunner].
func (p *Prepared) Baseline(ctx context.Context, b *engine.Bundle) (res Result, failed bool, err error) {
	engines := p.engines(b)
	p.involved = make([][][]string, len(p.suites))
	for i, s := range p.suites {
		p.involved[i] = make([][]string, len(s.Tests))
		for j := range s.Tests {
			if err := ctx.Err(); err != nil {
				return Result{}, false, err
			}
			r := runCase(ctx, engines[i], s, &s.Tests[j])
			p.involved[i][j] = r.Policies
			if r.Status == Fail && !failed {
				res, failed = r, true
			}
		}
	}
	return res, failed, nil
}

// FirstFailure runs the tests against b until one fails and returns its
// result; failed is false when every test passes. The tests whose
// decision involved one of the policies named (as recorded by
// [Prepared.Baseline]) are tried first, since a change to a policy shows
// most often where it decided; within each group the test that failed last
// is tried first, since a test that notices one broken rule tends to
// notice its neighbours.
func (r *Runner) FirstFailure(ctx context.Context, b *engine.Bundle, policies ...string) (res Result, failed bool, err error) {
	for _, e := range r.engines {
		e.Activate(b)
	}
	reaches := func(ref caseRef) bool {
		if r.p.involved == nil {
			return false
		}
		for _, id := range r.p.involved[ref.suite][ref.test] {
			if slices.Contains(policies, id) {
				return true
			}
		}
		return false
	}
	passes := []bool{true}
	if len(policies) > 0 && r.p.involved != nil {
		passes = []bool{true, false}
	}
	for _, want := range passes {
		for i, ref := range r.order {
			if len(passes) == 2 && reaches(ref) != want {
				continue
			}
			if err := ctx.Err(); err != nil {
				return Result{}, false, err
			}
			s := r.p.suites[ref.suite]
			c := &s.Tests[ref.test]
			// Check, not Explain: no trace is needed to tell pass from fail.
			resp := r.engines[ref.suite].Check(ctx, c.Request)
			if diff := compare(&c.Want, resp); len(diff) > 0 {
				copy(r.order[1:i+1], r.order[:i])
				r.order[0] = ref
				return Result{Suite: s.Name, Name: c.Name, File: s.File, Line: c.Line, Status: Fail, Diff: diff, Response: resp}, true, nil
			}
		}
	}
	return Result{}, false, nil
}
