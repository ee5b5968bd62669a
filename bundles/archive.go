package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing/fstest"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
)

// Names inside a bundle. Everything under MetaDir is bundle metadata; the
// engine skips hidden directories, so it never sees them as policy.
const (
	// MetaDir holds the bundle manifest and the signatures.
	MetaDir = ".bundle"
	// ManifestPath is the bundle manifest: revision and SHA-256 of every file.
	ManifestPath = MetaDir + "/manifest.json"
	// SignaturesPath holds the detached JWS signatures over the manifest.
	SignaturesPath = MetaDir + "/signatures.json"
	// Format is the value of [Manifest.Format] this package writes and reads.
	Format = "chaperone-bundle/v1"
)

// Limits on what a bundle may hold; they bound the memory a hostile archive
// can make a loader use.
const (
	maxFileSize  = 16 << 20
	maxTotalSize = 64 << 20
	maxFiles     = 10000
	// maxEntries bounds the tar entries of an archive, directories
	// included: the files, the metadata, and as many directories again.
	maxEntries = 2*maxFiles + 2
)

// Manifest is the bundle manifest (.bundle/manifest.json). Its exact bytes
// are what signatures sign, and their SHA-256 is the bundle's digest.
type Manifest struct {
	Format string `json:"format"`
	// Name and Revision are copied from the policy directory's manifest.yaml.
	Name     string `json:"name"`
	Revision string `json:"revision"`
	// Tests records what happened to the bundle's policy tests at build time.
	Tests TestRecord `json:"tests"`
	// Files lists every file of the bundle but the metadata, sorted by path.
	Files []FileDigest `json:"files"`
}

// Test statuses recorded in [TestRecord.Status].
const (
	TestsPassed  = "passed"
	TestsSkipped = "skipped" // --skip-tests
	TestsNotRun  = "not-run" // no test runner was available
)

// TestRecord says whether the policy tests ran when the bundle was built.
type TestRecord struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// FileDigest is one file of a bundle.
type FileDigest struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Archive is a policy bundle in memory: its files, and when it was built,
// its manifest and signatures. Read one with [ReadArchive] or [ReadDir],
// make one with [Build]; write it with [Archive.WriteTo].
type Archive struct {
	files       map[string][]byte
	manifest    *Manifest
	manifestRaw []byte
	signatures  []string
}

// Built reports whether the archive carries a bundle manifest. A policy
// directory that was never built has none.
func (a *Archive) Built() bool { return a.manifestRaw != nil }

// Manifest returns the bundle manifest, or nil when the archive is not built.
func (a *Archive) Manifest() *Manifest { return a.manifest }

// Digest is "sha256:" and the hex SHA-256 of the bundle manifest, or of the
// manifest the files would get when the archive is not built.
func (a *Archive) Digest() string {
	raw := a.manifestRaw
	if raw == nil {
		m := newManifest(a.files, TestRecord{Status: TestsNotRun})
		raw, _ = encodeManifest(m)
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Paths lists the archive's files (not the metadata), sorted.
func (a *Archive) Paths() []string {
	out := make([]string, 0, len(a.files))
	for p := range a.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// FS returns the archive's files as a file system, the input of
// [engine.LoadBundle].
func (a *Archive) FS() fs.FS {
	m := make(fstest.MapFS, len(a.files))
	for p, data := range a.files {
		m[p] = &fstest.MapFile{Data: data, Mode: 0o644}
	}
	return m
}

// Compile compiles the archive's policies. It does not verify anything;
// [Verify] first.
func (a *Archive) Compile() (*engine.Bundle, error) {
	b, err := engine.LoadBundle(a.FS())
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	if a.manifest != nil && b.Revision() != a.manifest.Revision {
		return nil, fmt.Errorf("compile: manifest.yaml revision %q differs from the bundle manifest's %q", b.Revision(), a.manifest.Revision)
	}
	return b, nil
}

// fixedMtime is the modification time (Unix seconds, 2000-01-01 UTC) of
// every entry of a bundle, so that the same files always make the same bytes.
const fixedMtime = 946684800

// WriteTo writes the archive as a deterministic tar.gz: entries sorted by
// path (metadata first), mode 0644, uid and gid 0, no user or group names,
// a fixed modification time, and a gzip header without name or time.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
	if err != nil {
		return 0, err
	}
	tw := tar.NewWriter(zw)
	entries := map[string][]byte{}
	for p, d := range a.files {
		entries[p] = d
	}
	if a.manifestRaw != nil {
		entries[ManifestPath] = a.manifestRaw
	}
	if len(a.signatures) > 0 {
		raw, err := encodeSignatures(a.signatures)
		if err != nil {
			return cw.n, err
		}
		entries[SignaturesPath] = raw
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		data := entries[p]
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     p,
			Size:     int64(len(data)),
			Mode:     0o644,
			ModTime:  time.Unix(fixedMtime, 0).UTC(),
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return cw.n, err
		}
		if _, err := tw.Write(data); err != nil {
			return cw.n, err
		}
	}
	if err := tw.Close(); err != nil {
		return cw.n, err
	}
	if err := zw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// Bytes returns the archive as written by [Archive.WriteTo].
func (a *Archive) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadArchive reads a bundle archive (tar.gz). It checks the archive's shape
// (regular files with clean relative paths, no duplicates, size limits) but
// not its digests or signatures: that is [Verify].
func ReadArchive(r io.Reader) (*Archive, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	entries := map[string][]byte{}
	dirs := map[string]bool{}
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		// Every entry counts, directories too: a stream of empty
		// entries costs CPU without adding a byte of content.
		if n >= maxEntries {
			return nil, fmt.Errorf("read bundle: more than %d entries", maxEntries)
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg:
		default:
			return nil, fmt.Errorf("read bundle: %s: not a regular file", hdr.Name)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")
		if !fs.ValidPath(name) || name == "." {
			return nil, fmt.Errorf("read bundle: %q: not a clean relative path", hdr.Name)
		}
		if _, dup := entries[name]; dup || dirs[name] {
			return nil, fmt.Errorf("read bundle: %s: duplicate entry", name)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs[name] = true
			continue
		}
		if hdr.Size > maxFileSize {
			return nil, fmt.Errorf("read bundle: %s: larger than %d bytes", name, maxFileSize)
		}
		total += hdr.Size
		if total > maxTotalSize {
			return nil, fmt.Errorf("read bundle: larger than %d bytes", maxTotalSize)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("read bundle: %s: %w", name, err)
		}
		entries[name] = data
	}
	// A directory entry must hold a file of the bundle, so that what the
	// manifest lists covers every entry.
	for name := range entries {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			delete(dirs, d)
		}
	}
	for d := range dirs {
		return nil, fmt.Errorf("read bundle: directory %s holds no file of the bundle", d)
	}
	return fromEntries(entries)
}

// ReadDir reads a policy directory, or an unpacked bundle (a directory with
// .bundle/manifest.json), as an archive. Hidden files and directories other
// than .bundle are left out, and so are files that are not policy sources,
// data, tests or documentation (see [Build]).
func ReadDir(fsys fs.FS) (*Archive, error) {
	entries := map[string][]byte{}
	var total int64
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if d.IsDir() {
			if p == MetaDir {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		inMeta := path.Dir(p) == MetaDir
		if !inMeta && (strings.HasPrefix(d.Name(), ".") || !isSource(p)) {
			return nil
		}
		if inMeta && p != ManifestPath && p != SignaturesPath {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		if len(entries) >= maxFiles+2 {
			return fmt.Errorf("more than %d files", maxFiles)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if len(data) > maxFileSize {
			return fmt.Errorf("%s: larger than %d bytes", p, maxFileSize)
		}
		total += int64(len(data))
		if total > maxTotalSize {
			return fmt.Errorf("larger than %d bytes", maxTotalSize)
		}
		entries[p] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	return fromEntries(entries)
}

// isSource reports whether a file of a policy directory goes into a bundle:
// sources, data, tests, manifest and documentation. Go files (the embedding
// package of the reference bundle) and anything else stay out.
func isSource(p string) bool {
	switch path.Ext(p) {
	case ".cedar", ".rego", ".json", ".yaml", ".yml", ".md":
		return true
	}
	return false
}

// fromEntries splits the metadata off the files.
func fromEntries(entries map[string][]byte) (*Archive, error) {
	a := &Archive{files: map[string][]byte{}}
	for p, data := range entries {
		switch {
		case p == ManifestPath:
			m, err := decodeManifest(data)
			if err != nil {
				return nil, &VerifyError{Kind: BadManifest, File: ManifestPath, Err: err}
			}
			a.manifest, a.manifestRaw = m, data
		case p == SignaturesPath:
			sigs, err := decodeSignatures(data)
			if err != nil {
				return nil, &VerifyError{Kind: BadSignature, File: SignaturesPath, Err: err}
			}
			a.signatures = sigs
		case strings.HasPrefix(p, MetaDir+"/"):
			return nil, fmt.Errorf("read bundle: %s: unknown metadata file", p)
		default:
			a.files[p] = data
		}
	}
	if len(a.signatures) > 0 && a.manifestRaw == nil {
		return nil, &VerifyError{Kind: BadManifest, File: ManifestPath, Err: errors.New("signatures without a bundle manifest")}
	}
	return a, nil
}

func newManifest(files map[string][]byte, tests TestRecord) *Manifest {
	m := &Manifest{Format: Format, Tests: tests, Files: make([]FileDigest, 0, len(files))}
	for p, data := range files {
		m.Files = append(m.Files, FileDigest{Path: p, SHA256: sha256Hex(data), Size: int64(len(data))})
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func encodeManifest(m *Manifest) ([]byte, error) {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

func decodeManifest(raw []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m.Format != Format {
		return nil, fmt.Errorf("format %q: want %q", m.Format, Format)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if !fs.ValidPath(f.Path) || strings.HasPrefix(f.Path, MetaDir+"/") {
			return nil, fmt.Errorf("file %q: not a clean relative path", f.Path)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("file %q listed twice", f.Path)
		}
		seen[f.Path] = true
	}
	return &m, nil
}

type signatureFile struct {
	// Signatures are detached JWS compact serialisations (RFC 7515 appendix
	// F): "<protected header>..<signature>", the payload being the bundle
	// manifest.
	Signatures []string `json:"signatures"`
}

func encodeSignatures(sigs []string) ([]byte, error) {
	s := append([]string(nil), sigs...)
	sort.Strings(s)
	raw, err := json.MarshalIndent(signatureFile{Signatures: s}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

func decodeSignatures(raw []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var f signatureFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	return f.Signatures, nil
}
