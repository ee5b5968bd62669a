package bundles

import (
	"errors"
	"fmt"
	"sort"
)

// VerifyErrorKind says what failed in a verification.
type VerifyErrorKind int

// Kinds of [VerifyError].
const (
	// BadManifest: the bundle manifest is missing or malformed.
	BadManifest VerifyErrorKind = iota + 1
	// DigestMismatch: a file's content differs from its digest in the manifest.
	DigestMismatch
	// MissingFile: the manifest lists a file the bundle does not hold.
	MissingFile
	// UnlistedFile: the bundle holds a file the manifest does not list.
	UnlistedFile
	// BadSignature: the signatures file is malformed.
	BadSignature
	// NotEnoughSignatures: fewer distinct trusted keys signed than required
	// (none at all for an unsigned bundle).
	NotEnoughSignatures
)

func (k VerifyErrorKind) String() string {
	switch k {
	case BadManifest:
		return "bad manifest"
	case DigestMismatch:
		return "digest mismatch"
	case MissingFile:
		return "file missing"
	case UnlistedFile:
		return "file not in manifest"
	case BadSignature:
		return "bad signatures file"
	case NotEnoughSignatures:
		return "not enough trusted signatures"
	}
	return "unknown"
}

// VerifyError reports a bundle that failed verification. File names the
// file concerned, when there is one.
type VerifyError struct {
	Kind VerifyErrorKind
	File string
	// Want and Got count trusted signers for NotEnoughSignatures.
	Want, Got int
	Err       error
}

func (e *VerifyError) Error() string {
	msg := "verify bundle: "
	if e.File != "" {
		msg += e.File + ": "
	}
	msg += e.Kind.String()
	if e.Kind == NotEnoughSignatures {
		msg += fmt.Sprintf(" (%d of %d required)", e.Got, e.Want)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *VerifyError) Unwrap() error { return e.Err }

// VerifyOptions says what a bundle must satisfy.
type VerifyOptions struct {
	// Keys are the trusted public keys.
	Keys []PublicKey
	// MinSignatures is how many distinct trusted keys must have signed. It
	// is at least 1 when Keys is not empty; with no keys only the digests
	// are checked.
	MinSignatures int
}

// Verified is what a successful verification established.
type Verified struct {
	// Digest of the bundle ([Archive.Digest]).
	Digest string
	// Signers are the ids of the trusted keys whose signatures verified,
	// sorted.
	Signers []string
}

// Verify checks that every file of a built archive matches its digest in
// the manifest, that the manifest lists every file, and that at least
// opts.MinSignatures distinct trusted keys signed the manifest. Failures
// are a [*VerifyError].
func Verify(a *Archive, opts VerifyOptions) (*Verified, error) {
	if !a.Built() {
		return nil, &VerifyError{Kind: BadManifest, File: ManifestPath, Err: errors.New("the bundle has no manifest (not built)")}
	}
	listed := make(map[string]bool, len(a.manifest.Files))
	for _, f := range a.manifest.Files {
		listed[f.Path] = true
		data, ok := a.files[f.Path]
		if !ok {
			return nil, &VerifyError{Kind: MissingFile, File: f.Path}
		}
		if got := sha256Hex(data); got != f.SHA256 || int64(len(data)) != f.Size {
			return nil, &VerifyError{Kind: DigestMismatch, File: f.Path,
				Err: fmt.Errorf("manifest sha256:%s, content sha256:%s", f.SHA256, got)}
		}
	}
	for _, p := range a.Paths() {
		if !listed[p] {
			return nil, &VerifyError{Kind: UnlistedFile, File: p}
		}
	}

	want := opts.MinSignatures
	if len(opts.Keys) > 0 && want < 1 {
		want = 1
	}
	v := &Verified{Digest: a.Digest()}
	signed := map[string]bool{} // by key thumbprint: distinct keys, not distinct names
	for _, k := range opts.Keys {
		tp := KeyID(k.Key)
		if signed[tp] {
			continue
		}
		for _, s := range a.signatures {
			if checkSignature(s, a.manifestRaw, k.Key) == nil {
				signed[tp] = true
				id := k.ID
				if id == "" {
					id = tp
				}
				if kid := keyIDOf(s, a.manifestRaw); kid != "" && kid != id {
					id += " (kid " + kid + ")"
				}
				v.Signers = append(v.Signers, id)
				break
			}
		}
	}
	sort.Strings(v.Signers)
	if len(signed) < want {
		return nil, &VerifyError{Kind: NotEnoughSignatures, File: SignaturesPath, Want: want, Got: len(signed)}
	}
	return v, nil
}
