package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository's root, seen from this package.
const repoRoot = "../.."

// exampleDecisions are what the example requests decide against the
// embedded reference bundle with examples/consents on file, as
// examples/README.md says: the decision and a reason (a policy id or a
// code) the response must carry.
var exampleDecisions = map[string]struct{ decision, reason string }{
	"clinician-read.json":           {"DECISION_ALLOW", "clinician-read-clinical-own-org"},
	"clinician-read-opted-out.json": {"DECISION_ALLOW", "CONSENT_OVERRIDDEN"},
	"other-organization.json":       {"DECISION_DENY", "TENANT_MISMATCH"},
	"break-glass.json":              {"DECISION_ALLOW", "break-glass-emergency-access"},
	"billing-reads-patient.json":    {"DECISION_ALLOW", "billing-read-patient-demographics-own-org"},
}

// TestExamplesDecide runs every example request through `chaperone check`
// (with and without --explain), so the examples the documentation uses
// cannot rot.
func TestExamplesDecide(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "requests", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example requests: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		want, ok := exampleDecisions[name]
		if !ok {
			t.Errorf("examples/requests/%s: no expected decision in exampleDecisions (and examples/README.md)", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, extra := range [][]string{nil, {"--explain"}} {
				args := append([]string{"check", "--request", f, "--consents", filepath.Join(repoRoot, "examples", "consents")}, extra...)
				code, out, stderr := runAudit(t, args...)
				if code != 0 {
					t.Fatalf("chaperone %s: exit %d: %s", strings.Join(args, " "), code, stderr)
				}
				var resp struct {
					Decision string
					Reasons  []struct{ Code, PolicyID string }
				}
				if err := json.Unmarshal([]byte(out), &resp); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				found := slices.ContainsFunc(resp.Reasons, func(r struct{ Code, PolicyID string }) bool {
					return r.Code == want.reason || r.PolicyID == want.reason
				})
				if resp.Decision != want.decision || !found {
					t.Errorf("%s: %s %+v, want %s with %s", name, resp.Decision, resp.Reasons, want.decision, want.reason)
				}
			}
		})
	}
	for name := range exampleDecisions {
		if !slices.Contains(files, filepath.Join(repoRoot, "examples", "requests", name)) {
			t.Errorf("exampleDecisions names %s, which examples/requests does not have", name)
		}
	}
}

var (
	fence = regexp.MustCompile("(?m)^```([a-z]*)\\n((?s:.*?))^```")
	// fileArg finds the files a command reads: after --request, --requests,
	// --consents, curl's -d @, and the consents of consent eval.
	fileArg     = regexp.MustCompile(`(?:--requests?|--consents)[ =](\S+)|-d @(\S+)`)
	outputArg   = regexp.MustCompile(`(?:-o|--output)[ =](\S+)`)
	examplePath = regexp.MustCompile(`examples/[A-Za-z0-9_./-]*[A-Za-z0-9_-]`)
)

// TestDocsUseExamples: every file a shell command of the documentation
// reads (a request, requests, consents) is in examples/ (or written by an
// earlier command of the same block), and every examples/ path the
// documentation names exists.
func TestDocsUseExamples(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"README.md", "examples/README.md", "docs/first-policy.md", "policies/README.md"} {
		raw, err := os.ReadFile(filepath.Join(repoRoot, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range examplePath.FindAllString(string(raw), -1) {
			if _, err := os.Stat(filepath.Join(repoRoot, p)); err != nil {
				t.Errorf("%s names %s, which does not exist", doc, p)
			}
		}
		if doc == "docs/first-policy.md" {
			continue // its commands read the files the walk-through writes (TestFirstPolicyWalkthrough runs them)
		}
		for _, m := range fence.FindAllStringSubmatch(string(raw), -1) {
			if m[1] != "sh" {
				continue
			}
			written := map[string]bool{}
			for _, line := range strings.Split(m[2], "\n") {
				if !strings.Contains(line, "chaperone ") && !strings.HasPrefix(strings.TrimSpace(line), "curl ") && !strings.HasPrefix(strings.TrimSpace(line), "-H") {
					continue
				}
				var files []string
				for _, a := range fileArg.FindAllStringSubmatch(line, -1) {
					files = append(files, a[1]+a[2])
				}
				if i := strings.Index(line, "consent eval"); i >= 0 {
					for _, f := range strings.Fields(line[i:]) {
						if strings.HasSuffix(f, ".json") {
							files = append(files, f)
						}
					}
				}
				for _, f := range files {
					if written[f] {
						continue
					}
					if !strings.HasPrefix(f, "examples/") {
						t.Errorf("%s: %q reads %s, which is not in examples/", doc, strings.TrimSpace(line), f)
					}
				}
				for _, o := range outputArg.FindAllStringSubmatch(line, -1) {
					written[o[1]] = true
				}
			}
		}
	}
}
