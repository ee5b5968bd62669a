package bundles_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/bundles"
)

// repack writes the entries of raw again with extra entries first.
func repack(t *testing.T, raw []byte, extra func(tw *tar.Writer)) []byte {
	t.Helper()
	files := unpack(t, raw)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	extra(tw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := files[n].Data
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(d))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(d)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

func dirEntry(t *testing.T, tw *tar.Writer, name string) {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveEntries: every tar entry counts against the entry limit and a
// directory entry must hold a file of the bundle (4M padding directory
// entries verified before, at 20 s of CPU per load).
func TestArchiveEntries(t *testing.T) {
	t.Parallel()
	raw := archiveBytes(t, "testdata/v1")
	for _, tc := range []struct {
		name    string
		extra   func(tw *tar.Writer)
		wantErr string
	}{
		{"no directory entries", func(*tar.Writer) {}, ""},
		{"the metadata directory", func(tw *tar.Writer) { dirEntry(t, tw, ".bundle/") }, ""},
		{"a padding directory", func(tw *tar.Writer) { dirEntry(t, tw, "padding/") }, "holds no file"},
		{"a duplicate directory", func(tw *tar.Writer) { dirEntry(t, tw, ".bundle/"); dirEntry(t, tw, "./.bundle") }, "duplicate"},
		{"a directory spelt like a file", func(tw *tar.Writer) { dirEntry(t, tw, ".bundle/manifest.json/") }, "duplicate"},
		{"more directories than the entry limit", func(tw *tar.Writer) {
			for i := range 25_000 {
				dirEntry(t, tw, fmt.Sprintf("p/%d/", i))
			}
		}, "entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := bundles.ReadArchive(bytes.NewReader(repack(t, raw, tc.extra)))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bundles.Verify(a, bundles.VerifyOptions{}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
