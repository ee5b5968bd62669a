package mutate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policytest"
)

// Status is what became of a mutant.
type Status string

// Mutant outcomes.
const (
	// Killed: a test failed against the mutant, or the bundle's static
	// checks refused it (KilledBy is [StaticChecks]).
	Killed Status = "killed"
	// Survived: every test passed against the mutant.
	Survived Status = "survived"
	// Equivalent: the policy says no test can tell the mutant apart; it
	// is not scored.
	Equivalent Status = "equivalent"
	// Invalid: the mutant does not compile; it is not scored.
	Invalid Status = "invalid"
)

// StaticChecks is the KilledBy of a mutant the bundle's static checks
// refuse ([engine.StaticCheckError]): a schema violation, a bad reason
// code, … is caught before any test runs, so the mutant is killed.
const StaticChecks = "static checks"

// Outcome is a mutant with what became of it.
type Outcome struct {
	Mutant
	Status Status
	// KilledBy names the first test that failed ("suite/test"), also for
	// an equivalent mutant that a test kills (its annotation is wrong).
	KilledBy string
	// Error is why an invalid mutant does not compile, or the first
	// problem the static checks found in a mutant they killed.
	Error string
}

// Report is the outcome of a mutation run.
type Report struct {
	Outcomes                              []Outcome // in file and source order
	Killed, Survived, Equivalent, Invalid int
	Duration                              time.Duration
}

// Scored is the number of mutants that count: killed plus survived.
func (r *Report) Scored() int { return r.Killed + r.Survived }

// Score is the percentage of scored mutants killed (100 when none is scored).
func (r *Report) Score() float64 {
	if r.Scored() == 0 {
		return 100
	}
	return 100 * float64(r.Killed) / float64(r.Scored())
}

// Line is the final line of a report: "mutants: K killed of N (P%)", P
// rounded down to a tenth so that it never shows a gate as met that is not.
func (r *Report) Line() string {
	p := 100.0
	if r.Scored() > 0 {
		p = float64(r.Killed*1000/r.Scored()) / 10
	}
	return fmt.Sprintf("mutants: %d killed of %d (%.1f%%)", r.Killed, r.Scored(), p)
}

// Options configure [Run].
type Options struct {
	// Workers is how many mutants are tested at once; 0 means GOMAXPROCS.
	Workers int
	// CheckEquivalent also runs the suites against the mutants marked
	// equivalent, to report those a test kills (their mark is wrong). Off,
	// they are listed without being run: each would run every test.
	CheckEquivalent bool
}

// ErrSuitesFail is returned when the suites fail against the bundle as
// written: mutants can only be scored against passing suites.
var ErrSuitesFail = errors.New("the suites fail against the unmutated bundle")

// Run generates the mutants of every policy of the bundle in dir and runs
// the bundle's suites against each, in process: the suites are parsed and
// their fixtures loaded once, each mutant is compiled once (a mutant that
// does not compile is [Invalid]) and the tests run until one fails.
func Run(ctx context.Context, dir string, opts Options) (*Report, error) {
	start := time.Now()
	files, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	base, err := engine.LoadBundle(files)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", dir, err)
	}
	prep, err := policytest.Prepare(ctx, dir)
	if err != nil {
		return nil, err
	}
	if res, failed, err := prep.Baseline(ctx, base); err != nil {
		return nil, err
	} else if failed {
		return nil, fmt.Errorf("%w: %s/%s (%s:%d): %s", ErrSuitesFail, res.Suite, res.Name, res.File, res.Line, strings.Join(res.Diff, "; "))
	}
	srcs, err := Sources(files)
	if err != nil {
		return nil, err
	}
	var outcomes []Outcome
	for _, s := range srcs {
		ms, err := Generate(s)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			outcomes = append(outcomes, Outcome{Mutant: m})
		}
	}
	sources := map[string][]byte{}
	for _, s := range srcs {
		sources[s.File] = s.Src
	}

	workers := cmp.Or(opts.Workers, runtime.GOMAXPROCS(0))
	jobs := make(chan *Outcome)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := prep.NewRunner()
			for o := range jobs {
				if o.Equivalent != "" && !opts.CheckEquivalent {
					o.Status = Equivalent
					continue
				}
				if err := test(ctx, r, files, sources[o.File], o); err != nil {
					errc <- err
					for range jobs {
					}
					return
				}
			}
		}()
	}
	for i := range outcomes {
		if ctx.Err() != nil {
			break
		}
		jobs <- &outcomes[i]
	}
	close(jobs)
	wg.Wait()
	close(errc)
	if err := errors.Join(<-errc, ctx.Err()); err != nil {
		return nil, err
	}

	rep := &Report{Outcomes: outcomes}
	for i := range outcomes {
		o := &outcomes[i]
		o.File = filepath.ToSlash(filepath.Join(dir, o.File))
		switch o.Status {
		case Killed:
			rep.Killed++
		case Survived:
			rep.Survived++
		case Equivalent:
			rep.Equivalent++
		case Invalid:
			rep.Invalid++
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// test compiles one mutant and runs the suites against it.
func test(ctx context.Context, r *policytest.Runner, files fstest.MapFS, src []byte, o *Outcome) error {
	fsys := maps.Clone(files)
	fsys[o.File] = &fstest.MapFile{Data: o.Apply(src), Mode: 0o644}
	b, err := engine.LoadBundle(fsys)
	var sce *engine.StaticCheckError
	switch {
	case errors.As(err, &sce):
		// The bundle's static checks refuse the mutant (an unknown
		// attribute, a type mismatch, …): it could never be deployed.
		// A mutant marked equivalent stays unscored, as it is without
		// --check-equivalent: no test contradicts its mark.
		o.Error = sce.Problems[0].String()
		o.Status = Killed
		if o.Equivalent != "" {
			o.Status = Equivalent
			return nil
		}
		o.KilledBy = StaticChecks
		return nil
	case err != nil:
		o.Status, o.Error = Invalid, err.Error()
		return nil
	}
	res, failed, err := r.FirstFailure(ctx, b, o.Policies...)
	if err != nil {
		return err
	}
	switch {
	case o.Equivalent != "":
		o.Status = Equivalent
	case failed:
		o.Status = Killed
	default:
		o.Status = Survived
	}
	if failed {
		o.KilledBy = res.Suite + "/" + res.Name
	}
	return nil
}

// readDir reads a bundle directory into memory once, skipping hidden
// directories and testdata as the engine does, so that no mutant reads a
// file again.
func readDir(dir string) (fstest.MapFS, error) {
	out := fstest.MapFS{}
	root := os.DirFS(dir)
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if !bundleFile(p) {
			return nil
		}
		data, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: data, Mode: 0o644}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", dir, err)
	}
	return out, nil
}

// bundleFile reports whether the engine reads p when it loads a bundle.
func bundleFile(p string) bool {
	return p == engine.ManifestFile || strings.HasSuffix(p, ".cedar") || strings.HasSuffix(p, ".rego") ||
		(strings.HasSuffix(p, ".json") && path.Dir(p) == "data")
}
