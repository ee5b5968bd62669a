package bundles

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// TestRunner runs the policy tests of a policy directory (the runner of
// `chaperone test`). It returns a one-line summary, and an error when a
// test failed or the tests could not run; an error wrapping [ErrNoTests]
// means the directory has no tests, recorded as not run.
type TestRunner func(ctx context.Context, fsys fs.FS) (summary string, err error)

// ErrNoTests is returned by a [TestRunner] for a directory without tests.
var ErrNoTests = errors.New("no policy tests")

// BuildOptions configures [Build].
type BuildOptions struct {
	// RunTests runs the bundle's policy tests; nil when no runner is
	// available, in which case the manifest records the tests as not run.
	RunTests TestRunner
	// SkipTests does not run the tests and records that in the manifest.
	SkipTests bool
}

// TestsFailedError reports a build refused because the policy tests failed.
type TestsFailedError struct {
	Err error
}

func (e *TestsFailedError) Error() string { return "policy tests failed: " + e.Err.Error() }
func (e *TestsFailedError) Unwrap() error { return e.Err }

// Build packs a policy directory into a bundle: it compiles the policies
// (a failure is an [*engine.CompileError] or another load error), runs the
// tests (see [BuildOptions]), and writes the bundle manifest with the
// revision and the SHA-256 of every file. Existing metadata of an unpacked
// bundle (manifest, signatures) is dropped: a rebuilt bundle is signed anew.
func Build(ctx context.Context, fsys fs.FS, opts BuildOptions) (*Archive, error) {
	a, err := ReadDir(fsys)
	if err != nil {
		return nil, err
	}
	a.manifest, a.manifestRaw, a.signatures = nil, nil, nil
	b, err := a.Compile()
	if err != nil {
		return nil, err
	}
	tests := TestRecord{Status: TestsNotRun, Detail: "no policy test runner in this build"}
	switch {
	case opts.SkipTests:
		tests = TestRecord{Status: TestsSkipped, Detail: "--skip-tests"}
	case opts.RunTests != nil:
		summary, err := opts.RunTests(ctx, a.FS())
		switch {
		case errors.Is(err, ErrNoTests):
			tests = TestRecord{Status: TestsNotRun, Detail: err.Error()}
		case err != nil:
			return nil, &TestsFailedError{Err: err}
		default:
			tests = TestRecord{Status: TestsPassed, Detail: summary}
		}
	}
	m := newManifest(a.files, tests)
	m.Name, m.Revision = b.Manifest().Name, b.Revision()
	raw, err := encodeManifest(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	a.manifest, a.manifestRaw = m, raw
	return a, nil
}
