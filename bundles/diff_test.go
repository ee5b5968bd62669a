package bundles_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/validation"
)

var update = flag.Bool("update", false, "rewrite the golden files of the diff report")

func compile(t *testing.T, dir string) *engine.Bundle {
	t.Helper()
	b, err := build(t, dir).Compile()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readRequests(t *testing.T, file string) []bundles.Request {
	t.Helper()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reqs, err := bundles.ReadRequests(f, v)
	if err != nil {
		t.Fatal(err)
	}
	return reqs
}

func TestDiffGolden(t *testing.T) {
	t.Parallel()
	reqs := readRequests(t, "testdata/diff/requests.jsonl")
	opts := bundles.DiffOptions{
		Consents:     engine.StoreConsents(consentstore.NewMemory()),
		ConsentsNote: "replayed without consents (every request about a patient sees NO_CONSENT)",
		Now:          time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC),
		Samples:      2,
		OldDigest:    build(t, "testdata/v1").Digest(),
		NewDigest:    build(t, "testdata/v2").Digest(),
	}
	for _, tc := range []struct {
		name     string
		old, new string
		golden   string
		render   func(*bundles.Report, *bytes.Buffer) error
	}{
		{name: "markdown", old: "testdata/v1", new: "testdata/v2", golden: "report.md",
			render: func(r *bundles.Report, b *bytes.Buffer) error { return r.Markdown(b) }},
		{name: "json", old: "testdata/v1", new: "testdata/v2", golden: "report.json",
			render: func(r *bundles.Report, b *bytes.Buffer) error { return r.JSON(b) }},
		{name: "no change", old: "testdata/v1", new: "testdata/v1", golden: "same.md",
			render: func(r *bundles.Report, b *bytes.Buffer) error { return r.Markdown(b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := opts
			if tc.new == tc.old {
				o.NewDigest = o.OldDigest
			}
			r := bundles.Diff(context.Background(), compile(t, tc.old), compile(t, tc.new), reqs, o)
			var got bytes.Buffer
			if err := tc.render(r, &got); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "diff", tc.golden)
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("report differs from %s (go test ./bundles -run TestDiffGolden -update rewrites it):\n%s", golden, got.String())
			}
		})
	}
}

func TestDiffCounts(t *testing.T) {
	t.Parallel()
	reqs := readRequests(t, "testdata/diff/requests.jsonl")
	r := bundles.Diff(context.Background(), compile(t, "testdata/v1"), compile(t, "testdata/v2"), reqs, bundles.DiffOptions{
		Consents: engine.StoreConsents(consentstore.NewMemory()),
		Now:      time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC),
	})
	if r.Requests != 14 || r.Changed+r.ObligationsChanged+r.Unchanged != r.Requests {
		t.Errorf("requests %d = changed %d + obligations %d + unchanged %d?", r.Requests, r.Changed, r.ObligationsChanged, r.Unchanged)
	}
	if r.Changed != 8 || r.ObligationsChanged != 3 {
		t.Errorf("changed %d, obligations changed %d; want 8 and 3", r.Changed, r.ObligationsChanged)
	}
}

func TestReadRequestsNamesBadLine(t *testing.T) {
	t.Parallel()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, input, want string
	}{
		{name: "syntax", input: "{\"subject\":\n", want: "line 1"},
		{name: "rule", input: "\n{\"subject\":{\"id\":\"a\"},\"action\":\"fly\",\"resource\":{\"type\":\"Patient\"},\"purposeOfUse\":\"TREAT\"}\n", want: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := bundles.ReadRequests(strings.NewReader(tc.input), v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// reviewReport replays examples/review/requests.jsonl against the crafted
// pair examples/review/old → new (with the consents of Patient/52, a
// permit, and Patient/53, a deny): a reason code changed within the same
// decision, new ALLOWs with obligations, obligations changed in two kinds,
// a consent overridden, and roles and types that differ within a group.
func reviewReport(t *testing.T) *bundles.Report {
	t.Helper()
	mem := consentstore.NewMemory()
	if _, err := mem.Load(context.Background(), "../examples/review/consents"); err != nil {
		t.Fatal(err)
	}
	return bundles.Diff(context.Background(), compile(t, "../examples/review/old"), compile(t, "../examples/review/new"),
		readRequests(t, "../examples/review/requests.jsonl"), bundles.DiffOptions{
			Consents:     engine.StoreConsents(mem),
			ConsentsNote: "replayed with the consents of Patient/52 and Patient/53",
			Now:          time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC),
		})
}

func findGroup(gs []bundles.Group, policy string) *bundles.Group {
	for i := range gs {
		if gs[i].Policy == policy {
			return &gs[i]
		}
	}
	return nil
}

func TestDiffReview(t *testing.T) {
	t.Parallel()
	r := reviewReport(t)
	t.Run("every request counted once", func(t *testing.T) {
		t.Parallel()
		if r.Requests != 8 || r.Changed != 3 || r.ReasonsChanged != 2 || r.ObligationsChanged != 2 || r.Unchanged != 1 {
			t.Errorf("requests %d: changed %d, reasons %d, obligations %d, unchanged %d; want 8: 3, 2, 2, 1",
				r.Requests, r.Changed, r.ReasonsChanged, r.ObligationsChanged, r.Unchanged)
		}
	})
	t.Run("a reason code change within the same decision is a change", func(t *testing.T) {
		t.Parallel()
		g := findGroup(r.ReasonGroups, "+RESEARCH_CONSENT_REQUIRED -DEIDENTIFICATION_REQUIRED")
		if len(r.ReasonGroups) != 1 || g == nil || g.From != "DENY" || g.To != "DENY" || g.Count != 2 {
			t.Fatalf("reason groups = %+v", r.ReasonGroups)
		}
		if want := []bundles.Count{{Value: "Condition", Count: 1}, {Value: "Observation", Count: 1}}; !slices.Equal(g.ResourceTypes, want) {
			t.Errorf("resource types %v, want %v (one group across types)", g.ResourceTypes, want)
		}
	})
	t.Run("new ALLOWs show their obligations", func(t *testing.T) {
		t.Parallel()
		g := findGroup(r.Groups, "+pharmacist-read")
		if g == nil {
			t.Fatalf("no +pharmacist-read group in %+v", r.Groups)
		}
		want := []bundles.Count{{Value: "mask MedicationRequest.note", Count: 2}, {Value: "tag PHARMACY", Count: 2}}
		if !slices.Equal(g.NewObligations, want) {
			t.Errorf("new obligations %v, want %v", g.NewObligations, want)
		}
		if s := g.Samples[0]; s.NewObligations != "mask MedicationRequest.note, tag PHARMACY" || s.OldObligations != "" {
			t.Errorf("sample obligations old %q new %q", s.OldObligations, s.NewObligations)
		}
	})
	t.Run("groups merge by policy delta across roles, types and consents", func(t *testing.T) {
		t.Parallel()
		g := findGroup(r.Groups, "+pharmacist-read")
		if g == nil || g.Count != 2 || len(r.Groups) != 2 {
			t.Fatalf("groups = %+v", r.Groups)
		}
		if want := []bundles.Count{{Value: "nurse,pharmacist", Count: 1}, {Value: "pharmacist", Count: 1}}; !slices.Equal(g.Roles, want) {
			t.Errorf("roles %v, want %v", g.Roles, want)
		}
		if want := []bundles.Count{{Value: "+CONSENT_PERMIT", Count: 1}}; !slices.Equal(g.Consent, want) {
			t.Errorf("consent %v, want %v (the consent id stays out of the key)", g.Consent, want)
		}
	})
	t.Run("a consent overridden is a consent delta, not a policy", func(t *testing.T) {
		t.Parallel()
		g := findGroup(r.Groups, "+nurse-read")
		if g == nil || g.From != "DENY" || g.To != "ALLOW" {
			t.Fatalf("groups = %+v", r.Groups)
		}
		if want := []bundles.Count{{Value: "+CONSENT_OVERRIDDEN -CONSENT_DENY", Count: 1}}; !slices.Equal(g.Consent, want) {
			t.Errorf("consent %v, want %v", g.Consent, want)
		}
	})
	t.Run("obligation changes counted per request and per kind", func(t *testing.T) {
		t.Parallel()
		if want := (bundles.ObligationKinds{MaskPaths: 1, AuditTags: 2}); r.ObligationKinds != want {
			t.Errorf("kinds %+v, want %+v", r.ObligationKinds, want)
		}
		var changes []string
		for _, g := range r.Obligations {
			changes = append(changes, fmt.Sprintf("%s %s %d", g.Decision, g.Change, g.Count))
		}
		if want := []string{"ALLOW mask +Observation.performer; tags -CLINICAL 1", "ALLOW tags +ENCOUNTER_B -ENCOUNTER_A 1"}; !slices.Equal(changes, want) {
			t.Errorf("obligation groups %q, want %q", changes, want)
		}
	})
}

// TestDiffReviewGolden: the report of the crafted pair, as a reviewer
// reads it (Markdown) and as tools read it (JSON).
func TestDiffReviewGolden(t *testing.T) {
	t.Parallel()
	r := reviewReport(t)
	for _, tc := range []struct {
		golden string
		render func(*bytes.Buffer) error
	}{
		{"review.md", func(b *bytes.Buffer) error { return r.Markdown(b) }},
		{"review.json", func(b *bytes.Buffer) error { return r.JSON(b) }},
	} {
		var got bytes.Buffer
		if err := tc.render(&got); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("..", "examples", "review", tc.golden)
		if *update {
			if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("report differs from %s (go test ./bundles -run TestDiffReviewGolden -update rewrites it):\n%s", golden, got.String())
		}
	}
}

// TestDiffJSONShape: the JSON report's fields, as documented; lists are
// never null.
func TestDiffJSONShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ old, new string }{{"../examples/review/old", "../examples/review/new"}, {"../examples/review/old", "../examples/review/old"}} {
		r := bundles.Diff(context.Background(), compile(t, tc.old), compile(t, tc.new), readRequests(t, "../examples/review/requests.jsonl"),
			bundles.DiffOptions{Consents: engine.StoreConsents(consentstore.NewMemory()), Now: time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)})
		var b bytes.Buffer
		if err := r.JSON(&b); err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"version", "old", "new", "requests", "changed", "reasonsChanged", "obligationsChanged", "unchanged",
			"obligationKinds", "transitions", "groups", "reasonChanges", "obligations"} {
			v, ok := doc[k]
			if !ok || v == nil {
				t.Errorf("%s → %s: JSON lacks %q (or it is null)", tc.old, tc.new, k)
			}
		}
		if doc["version"] != float64(bundles.ReportVersion) {
			t.Errorf("version %v", doc["version"])
		}
		if bytes.Contains(b.Bytes(), []byte("null")) {
			t.Errorf("%s → %s: a null in the JSON report:\n%s", tc.old, tc.new, b.String())
		}
	}
}
