package mutate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/mutate"
)

func runMutate(t *testing.T, dir string) *mutate.Report {
	t.Helper()
	rep, err := mutate.Run(context.Background(), dir, mutate.Options{})
	if err != nil {
		t.Fatalf("Run(%s): %v", dir, err)
	}
	return rep
}

func survivors(rep *mutate.Report) []string {
	var out []string
	for _, o := range rep.Outcomes {
		if o.Status == mutate.Survived {
			out = append(out, o.String())
		}
	}
	return out
}

// TestWeakSuiteLeavesSurvivors: a suite with one ALLOW case does not
// notice the conditions of the permit, nor its obligation.
func TestWeakSuiteLeavesSurvivors(t *testing.T) {
	t.Parallel()
	rep := runMutate(t, "testdata/weak")
	want := []string{
		`testdata/weak/p.cedar:3:1: drop @audit_tag: @audit_tag("CLINICAL")`,
		`testdata/weak/p.cedar:11:3: drop conjunct: context.purposeOfUse == "TREAT"`,
		`testdata/weak/p.cedar:12:3: drop conjunct: resource.organization == principal.organization`,
	}
	if got := survivors(rep); !slices.Equal(got, want) {
		t.Errorf("survivors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := rep.Line(), "mutants: 4 killed of 7 (57.1%)"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	var out bytes.Buffer
	if err := mutate.WriteText(&out, rep, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if !slices.Equal(lines[:3], want) || lines[len(lines)-1] != rep.Line() {
		t.Errorf("text report:\n%s", out.String())
	}
}

// TestStrongSuiteKillsAll: one case per condition and the obligation
// asserted kill every mutant; the equivalent one is listed, not scored.
func TestStrongSuiteKillsAll(t *testing.T) {
	t.Parallel()
	rep, err := mutate.Run(context.Background(), "testdata/strong", mutate.Options{CheckEquivalent: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := survivors(rep); len(s) > 0 {
		t.Errorf("survivors: %v", s)
	}
	if rep.Killed != 7 || rep.Equivalent != 1 || rep.Invalid != 0 || rep.Score() != 100 {
		t.Errorf("killed %d, equivalent %d, invalid %d, score %v", rep.Killed, rep.Equivalent, rep.Invalid, rep.Score())
	}
	// principal in Role::"clinician" → principal == Role::"clinician"
	// compares a Subject with a Role: the static checks refuse it.
	static := slices.IndexFunc(rep.Outcomes, func(o mutate.Outcome) bool {
		return o.Status == mutate.Killed && o.KilledBy == mutate.StaticChecks
	})
	if static < 0 {
		t.Errorf("no mutant killed by the static checks: %+v", rep.Outcomes)
	} else if o := rep.Outcomes[static]; !strings.Contains(o.Original, `principal in Role::"clinician"`) || !strings.Contains(o.Error, "(cedar-schema)") {
		t.Errorf("killed by static checks: %s (%s)", o.String(), o.Error)
	}
	var out bytes.Buffer
	if err := mutate.WriteJSON(&out, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Mutants []struct {
			Status, Op, Equivalent, KilledBy string
		}
		Killed int
		Score  float64
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Killed != 7 || doc.Score != 100 || len(doc.Mutants) != 8 {
		t.Errorf("json: %s", out.String())
	}
	for _, m := range doc.Mutants {
		switch m.Status {
		case "killed":
			if m.KilledBy == "" {
				t.Errorf("a killed mutant names no test: %+v", m)
			}
		case "equivalent":
			if m.Op != "swap-in" || m.Equivalent != "no action is a member of read" {
				t.Errorf("equivalent mutant: %+v", m)
			}
		default:
			t.Errorf("status %q", m.Status)
		}
	}
}

// TestFailingSuitesAreRefused: mutants cannot be scored against suites
// that already fail.
func TestFailingSuitesAreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"manifest.yaml", "p.cedar", "s_test.yaml"} {
		src := "testdata/strong/" + f
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if f == "p.cedar" {
			data = bytes.Replace(data, []byte(`"TREAT"`), []byte(`"HPAYMT"`), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := mutate.Run(context.Background(), dir, mutate.Options{})
	if !errors.Is(err, mutate.ErrSuitesFail) {
		t.Fatalf("Run = %v, want ErrSuitesFail", err)
	}
}

// TestWrongEquivalenceIsReported: a mutant marked equivalent that a test
// kills is reported when equivalence is checked, and only then.
func TestWrongEquivalenceIsReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"manifest.yaml", "p.cedar", "s_test.yaml"} {
		data, err := os.ReadFile("testdata/strong/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if f == "p.cedar" {
			data = bytes.Replace(data, []byte(`  context.purposeOfUse == "TREAT" &&`),
				[]byte(`  context.purposeOfUse == "TREAT" && // mutate: equivalent drop-conjunct — wrongly`), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, check := range []bool{false, true} {
		rep, err := mutate.Run(context.Background(), dir, mutate.Options{CheckEquivalent: check})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := mutate.WriteText(&out, rep, false); err != nil {
			t.Fatal(err)
		}
		reported := strings.Contains(out.String(), `drop conjunct: context.purposeOfUse == "TREAT": marked equivalent but killed by strong/not for payment`)
		if reported != check || rep.Equivalent != 2 {
			t.Errorf("CheckEquivalent %v: reported %v, %d equivalent:\n%s", check, reported, rep.Equivalent, out.String())
		}
	}
}
