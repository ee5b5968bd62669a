package bundles_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chaperone-pdp/chaperone/bundles"
)

func TestCompareRevisions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"2026.11.25-2", "2026.12.01-1", -1},
		{"2026.01-9", "2026.01-10", -1},
		{"2026.01-10", "2026.01-9", 1},
		{"2026.01-1", "2026.01-1", 0},
		{"2026.01-01", "2026.01-1", 0},
		{"2026.01", "2026.01-1", -1},
		{"10", "9", 1},
		{"v2", "v10", -1},
		{"2026.01-1", "2026.01-1a", -1},
		{"rc1", "rc2", -1},
		{"99999999999999999999999", "100000000000000000000000", -1},
		{"", "1", -1},
		{"", "", 0},
	} {
		if got := bundles.CompareRevisions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareRevisions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := bundles.CompareRevisions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareRevisions(%q, %q) = %d, want %d (antisymmetric)", tc.b, tc.a, got, -tc.want)
		}
	}
}

// A bundle whose revision is not newer than the active one is refused
// however it is signed, unless downgrades are allowed: then it activates
// as a downgrade, and the recorder is told so. The same bundle fetched
// again is no change.
func TestLoaderRefusesDowngrade(t *testing.T) {
	t.Parallel()
	alice := newSigner(t)
	v1, v2 := archiveBytes(t, "testdata/v1", alice), archiveBytes(t, "testdata/v2", alice)
	// The same revision with other content.
	other := t.TempDir()
	if err := os.CopyFS(other, os.DirFS("testdata/v2")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(other, "care.cedar"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.WriteString("\n// edited\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		t.Fatal(err)
	}
	v2b := archiveBytes(t, other, alice)
	for _, tc := range []struct {
		name          string
		allow         bool
		second        []byte
		wantErr       error
		wantRevisions []string
		wantDowngrade bool
	}{
		{name: "older refused", second: v1, wantErr: bundles.ErrDowngrade, wantRevisions: []string{"2026.01-2"}},
		{name: "older allowed", allow: true, second: v1, wantRevisions: []string{"2026.01-2", "2026.01-1"}, wantDowngrade: true},
		{name: "same revision, other bundle, refused", second: v2b, wantErr: bundles.ErrDowngrade, wantRevisions: []string{"2026.01-2"}},
		{name: "the same bundle again is no change", second: v2, wantRevisions: []string{"2026.01-2"}},
		{name: "the same bundle with other signatures is no change", second: archiveBytes(t, "testdata/v2"), wantRevisions: []string{"2026.01-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "b.tar.gz")
			write := func(b []byte) {
				if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p+".tmp", p); err != nil {
					t.Fatal(err)
				}
			}
			var recorded []bundles.Status
			tg := &target{}
			l := bundles.NewLoader(tg, bundles.FileSource(p), bundles.WithAllowDowngrade(tc.allow),
				bundles.WithActivationRecorder(func(_ context.Context, next, _ bundles.Status) (func(), error) {
					recorded = append(recorded, next)
					return func() {}, nil
				}))
			write(v2)
			if err := l.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			write(tc.second)
			err := l.Load(context.Background())
			var de *bundles.DowngradeError
			if tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || !errors.As(err, &de) || de.Active != "2026.01-2") || tc.wantErr == nil && err != nil {
				t.Fatalf("second load = %v, want %v", err, tc.wantErr)
			}
			if got := tg.activated(); len(got) != len(tc.wantRevisions) || got[len(got)-1] != tc.wantRevisions[len(tc.wantRevisions)-1] {
				t.Fatalf("activated %v, want %v", got, tc.wantRevisions)
			}
			if len(recorded) != len(tc.wantRevisions) {
				t.Fatalf("%d activations recorded, want %d", len(recorded), len(tc.wantRevisions))
			}
			if st := l.Status(); st.Downgrade != tc.wantDowngrade || recorded[len(recorded)-1].Downgrade != tc.wantDowngrade {
				t.Errorf("status %+v, recorded %+v; want downgrade %v", st, recorded[len(recorded)-1], tc.wantDowngrade)
			}
		})
	}
}
