package bundles_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
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
