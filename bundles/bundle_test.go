package bundles_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/engine"
)

// signer is a generated key pair.
type signer struct {
	priv ed25519.PrivateKey
	pub  bundles.PublicKey
}

func newSigner(t *testing.T) signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{priv: priv, pub: bundles.PublicKey{ID: bundles.KeyID(pub), Key: pub}}
}

func build(t *testing.T, dir string) *bundles.Archive {
	t.Helper()
	a, err := bundles.Build(context.Background(), os.DirFS(dir), bundles.BuildOptions{})
	if err != nil {
		t.Fatalf("build %s: %v", dir, err)
	}
	return a
}

// reread writes and reads back an archive, as a file would carry it.
func reread(t *testing.T, a *bundles.Archive) *bundles.Archive {
	t.Helper()
	raw, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.ReadArchive(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	return b
}

func TestBuildIsDeterministic(t *testing.T) {
	t.Parallel()
	first, err := build(t, "testdata/v1").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	second, err := build(t, "testdata/v1").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("two builds of the same directory differ")
	}
	// A copy of the directory with other modification times and an
	// unpacked-and-repacked archive give the same bytes too.
	again, err := reread(t, build(t, "testdata/v1")).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Fatal("a re-read archive writes other bytes")
	}
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, time %v", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, hdr.Name)
		if hdr.Mode != 0o644 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || hdr.ModTime.Unix() != 946684800 {
			t.Errorf("%s: header %+v", hdr.Name, hdr)
		}
	}
	if !slices.IsSorted(names) || names[0] != bundles.ManifestPath {
		t.Errorf("entries %v: want sorted, manifest first", names)
	}
}

func TestBuildManifest(t *testing.T) {
	t.Parallel()
	a := build(t, "testdata/v1")
	m := a.Manifest()
	if m.Name != "bundles-test" || m.Revision != "2026.01-1" || m.Format != bundles.Format {
		t.Errorf("manifest = %+v", m)
	}
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, f.Path)
		if len(f.SHA256) != 64 {
			t.Errorf("%s: sha256 %q", f.Path, f.SHA256)
		}
	}
	want := []string{"README.md", "care.cedar", "data/orgs.json", "manifest.yaml", "support.rego", "tests/care.yaml"}
	if !slices.Equal(paths, want) {
		t.Errorf("files = %v, want %v (notes.txt left out)", paths, want)
	}
	if m.Tests.Status != bundles.TestsNotRun {
		t.Errorf("tests = %+v, want not-run without a runner", m.Tests)
	}
	if !strings.HasPrefix(a.Digest(), "sha256:") {
		t.Errorf("digest %q", a.Digest())
	}
}

func TestBuildTests(t *testing.T) {
	t.Parallel()
	passing := func(context.Context, fsys) (string, error) { return "3 passed", nil }
	failing := func(context.Context, fsys) (string, error) { return "", errors.New("1 of 3 failed") }
	for _, tc := range []struct {
		name       string
		opts       bundles.BuildOptions
		wantStatus string
		wantErr    bool
	}{
		{name: "no runner", opts: bundles.BuildOptions{}, wantStatus: bundles.TestsNotRun},
		{name: "passing", opts: bundles.BuildOptions{RunTests: passing}, wantStatus: bundles.TestsPassed},
		{name: "failing", opts: bundles.BuildOptions{RunTests: failing}, wantErr: true},
		{name: "failing skipped", opts: bundles.BuildOptions{RunTests: failing, SkipTests: true}, wantStatus: bundles.TestsSkipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := bundles.Build(context.Background(), os.DirFS("testdata/v1"), tc.opts)
			if tc.wantErr {
				var tf *bundles.TestsFailedError
				if !errors.As(err, &tf) {
					t.Fatalf("err = %v, want *TestsFailedError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Manifest().Tests.Status; got != tc.wantStatus {
				t.Errorf("tests status = %q, want %q", got, tc.wantStatus)
			}
		})
	}
}

func TestBuildRefusesBadPolicies(t *testing.T) {
	t.Parallel()
	dir := fstest.MapFS{
		"manifest.yaml": {Data: []byte("name: bad\nrevision: \"1\"\n")},
		"p.cedar":       {Data: []byte("permit (principal, action, resource) when { ;")},
	}
	_, err := bundles.Build(context.Background(), dir, bundles.BuildOptions{})
	var ce *engine.CompileError
	if !errors.As(err, &ce) || ce.File != "p.cedar" {
		t.Fatalf("err = %v, want a compile error in p.cedar", err)
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	alice, bob, mallory := newSigner(t), newSigner(t), newSigner(t)
	signed := func(t *testing.T, by ...signer) *bundles.Archive {
		a := build(t, "testdata/v1")
		for _, s := range by {
			if err := a.Sign(s.priv, ""); err != nil {
				t.Fatal(err)
			}
		}
		return reread(t, a)
	}
	for _, tc := range []struct {
		name        string
		signers     []signer
		trusted     []signer
		min         int
		wantKind    bundles.VerifyErrorKind // 0: verifies
		wantSigners int
	}{
		{name: "one trusted signer", signers: []signer{alice}, trusted: []signer{alice}, wantSigners: 1},
		{name: "two of two", signers: []signer{alice, bob}, trusted: []signer{alice, bob}, min: 2, wantSigners: 2},
		{name: "digests only", signers: nil, trusted: nil},
		{name: "unsigned with a key", signers: nil, trusted: []signer{alice}, wantKind: bundles.NotEnoughSignatures},
		{name: "wrong key", signers: []signer{mallory}, trusted: []signer{alice, bob}, wantKind: bundles.NotEnoughSignatures},
		{name: "too few signatures", signers: []signer{alice, mallory}, trusted: []signer{alice, bob}, min: 2, wantKind: bundles.NotEnoughSignatures},
		{name: "one key signing twice counts once", signers: []signer{alice, alice}, trusted: []signer{alice, bob}, min: 2, wantKind: bundles.NotEnoughSignatures},
		{name: "one key trusted twice counts once", signers: []signer{alice}, trusted: []signer{alice, alice}, min: 2, wantKind: bundles.NotEnoughSignatures},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := signed(t, tc.signers...)
			var keys []bundles.PublicKey
			for _, s := range tc.trusted {
				keys = append(keys, s.pub)
			}
			v, err := bundles.Verify(a, bundles.VerifyOptions{Keys: keys, MinSignatures: tc.min})
			if tc.wantKind != 0 {
				var ve *bundles.VerifyError
				if !errors.As(err, &ve) || ve.Kind != tc.wantKind {
					t.Fatalf("err = %v, want kind %v", err, tc.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if len(v.Signers) != tc.wantSigners {
				t.Errorf("signers = %v, want %d", v.Signers, tc.wantSigners)
			}
			if v.Digest != a.Digest() {
				t.Errorf("digest %s, want %s", v.Digest, a.Digest())
			}
		})
	}
}

func TestSignatureDoesNotChangeDigest(t *testing.T) {
	t.Parallel()
	a := build(t, "testdata/v1")
	before := a.Digest()
	if err := a.Sign(newSigner(t).priv, "reviewer-1"); err != nil {
		t.Fatal(err)
	}
	b := reread(t, a)
	if b.Digest() != before {
		t.Errorf("digest changed by signing: %s → %s", before, b.Digest())
	}
	if sigs := b.Signatures(); len(sigs) != 1 || sigs[0].KeyID != "reviewer-1" || sigs[0].Algorithm != "EdDSA" {
		t.Errorf("signatures = %+v", sigs)
	}
}

// tamper rewrites one byte of one file inside a signed archive, keeping
// everything else, by re-packing the unpacked archive.
func TestTamperedFileIsNamed(t *testing.T) {
	t.Parallel()
	alice := newSigner(t)
	a := build(t, "testdata/v1")
	if err := a.Sign(alice.priv, ""); err != nil {
		t.Fatal(err)
	}
	raw, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file string
		edit func(unpacked fstest.MapFS)
		kind bundles.VerifyErrorKind
	}{
		{name: "one byte of a policy", file: "care.cedar", kind: bundles.DigestMismatch, edit: func(m fstest.MapFS) {
			m["care.cedar"].Data[10] ^= 0x01
		}},
		{name: "one byte of data", file: "data/orgs.json", kind: bundles.DigestMismatch, edit: func(m fstest.MapFS) {
			m["data/orgs.json"].Data[3]++
		}},
		{name: "a file removed", file: "support.rego", kind: bundles.MissingFile, edit: func(m fstest.MapFS) {
			delete(m, "support.rego")
		}},
		{name: "a file added", file: "extra.rego", kind: bundles.UnlistedFile, edit: func(m fstest.MapFS) {
			m["extra.rego"] = &fstest.MapFile{Data: []byte("package x\npermit contains \"x\" if true\n")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			unpacked := unpack(t, raw)
			tc.edit(unpacked)
			b, err := bundles.ReadDir(unpacked)
			if err != nil {
				t.Fatal(err)
			}
			_, err = bundles.Verify(reread(t, b), bundles.VerifyOptions{Keys: []bundles.PublicKey{alice.pub}})
			var ve *bundles.VerifyError
			if !errors.As(err, &ve) || ve.Kind != tc.kind || ve.File != tc.file {
				t.Fatalf("err = %v, want %v naming %s", err, tc.kind, tc.file)
			}
			if !strings.Contains(err.Error(), tc.file) {
				t.Errorf("message %q does not name %s", err, tc.file)
			}
		})
	}
}

func TestTamperedManifestBreaksSignature(t *testing.T) {
	t.Parallel()
	alice := newSigner(t)
	a := build(t, "testdata/v1")
	if err := a.Sign(alice.priv, ""); err != nil {
		t.Fatal(err)
	}
	raw, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Change a policy and fix up its digest in the manifest: the digests
	// match again, but the manifest no longer matches the signature.
	unpacked := unpack(t, raw)
	unpacked["care.cedar"].Data = append(unpacked["care.cedar"].Data, '\n')
	rebuilt, err := bundles.Build(context.Background(), unpacked, bundles.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := rebuilt.Bytes()
	forged := unpack(t, manifest)
	forged[bundles.SignaturesPath] = unpacked[bundles.SignaturesPath]
	b, err := bundles.ReadDir(forged)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bundles.Verify(b, bundles.VerifyOptions{Keys: []bundles.PublicKey{alice.pub}})
	var ve *bundles.VerifyError
	if !errors.As(err, &ve) || ve.Kind != bundles.NotEnoughSignatures {
		t.Fatalf("err = %v, want NotEnoughSignatures", err)
	}
}

func TestReadArchiveRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{name: "not gzip", data: []byte("plain text")},
		{name: "empty", data: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := bundles.ReadArchive(bytes.NewReader(tc.data)); err == nil {
				t.Fatal("read a broken archive without error")
			}
		})
	}
}

func TestKeysRoundTrip(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	privPEM, err := bundles.MarshalPrivateKey(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := bundles.MarshalPublicKey(s.pub.Key)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := bundles.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bundles.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Equal(s.priv) || !pub.Key.Equal(s.pub.Key) || pub.ID != s.pub.ID {
		t.Error("keys differ after a PEM round trip")
	}
	if _, err := bundles.ParsePublicKey(privPEM); err == nil {
		t.Error("a private key parsed as a public key")
	}
}

// TestBuildRefusesStaticCheckFailures: build refuses a bundle the static
// checks refuse, also when the tests are skipped.
func TestBuildRefusesStaticCheckFailures(t *testing.T) {
	t.Parallel()
	dir := fstest.MapFS{
		"manifest.yaml": {Data: []byte("name: bad\nrevision: \"1\"\n")},
		"p.rego":        {Data: []byte("package p\n\npermit contains \"x\" if \"clinician\" in input.subject.rolez\n")},
	}
	_, err := bundles.Build(context.Background(), dir, bundles.BuildOptions{SkipTests: true})
	var sce *engine.StaticCheckError
	if !errors.As(err, &sce) || len(sce.Problems) != 1 || sce.Problems[0].File != "p.rego" || sce.Problems[0].Line != 3 {
		t.Fatalf("err = %v, want a static check error at p.rego:3", err)
	}
}
