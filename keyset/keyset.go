package keyset

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// KeyBytes is the size of every key: AES-256.
const KeyBytes = 32

// MaxIDLength bounds a key id (it is stored with every sealed record).
const MaxIDLength = 64

// DefaultID is the id of the key of a file that holds one base64 key, and
// the id data sealed before key ids were stored is opened with.
const DefaultID = "default"

// ErrKeySet means a key file or key set is not well formed.
var ErrKeySet = errors.New("not a key set")

// ErrUnknownKey means data names a key id the set does not hold.
var ErrUnknownKey = errors.New("unknown key id")

// Set is a set of keys by id with one primary. It is immutable once made;
// [Set.Rotate] and [Set.Drop] return new sets.
type Set struct {
	primary string
	keys    map[string][]byte
	aeads   map[string]cipher.AEAD
}

type file struct {
	Primary string            `json:"primary"`
	Keys    map[string]string `json:"keys"`
}

// New returns a set of keys by id whose primary is primary.
func New(primary string, keys map[string][]byte) (*Set, error) {
	s := &Set{primary: primary, keys: make(map[string][]byte, len(keys)), aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, k := range keys {
		if err := checkID(id); err != nil {
			return nil, err
		}
		if len(k) != KeyBytes {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want %d", ErrKeySet, id, len(k), KeyBytes)
		}
		s.keys[id] = slices.Clone(k)
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrKeySet, id, err)
		}
		if s.aeads[id], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrKeySet, id, err)
		}
	}
	if _, ok := s.keys[primary]; !ok {
		return nil, fmt.Errorf("%w: the primary key %q is not in the set", ErrKeySet, primary)
	}
	return s, nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDLength {
		return fmt.Errorf("%w: key id %q: want 1 to %d characters", ErrKeySet, id, MaxIDLength)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: key id %q: only letters, digits, '-', '_' and '.'", ErrKeySet, id)
		}
	}
	return nil
}

// Parse reads a key set: the JSON form, or one key in standard base64
// (a set of one whose id is [DefaultID]). Surrounding white space is
// ignored.
func Parse(data []byte) (*Set, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		var f file
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
		}
		if len(f.Keys) == 0 {
			return nil, fmt.Errorf("%w: no keys", ErrKeySet)
		}
		keys := make(map[string][]byte, len(f.Keys))
		for id, text := range f.Keys {
			k, err := decodeKey(text)
			if err != nil {
				return nil, fmt.Errorf("%w: key %q: %v", ErrKeySet, id, err)
			}
			keys[id] = k
		}
		return New(f.Primary, keys)
	}
	k, err := decodeKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySet, err)
	}
	return New(DefaultID, map[string][]byte{DefaultID: k})
}

func decodeKey(text string) ([]byte, error) {
	k, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(text))
	switch {
	case err != nil:
		return nil, fmt.Errorf("not standard base64 (want %d random bytes in base64, e.g. from openssl rand -base64 %d)", KeyBytes, KeyBytes)
	case len(k) != KeyBytes:
		return nil, fmt.Errorf("the key is %d bytes, want %d (base64 of %d random bytes, e.g. from openssl rand -base64 %d)", len(k), KeyBytes, KeyBytes, KeyBytes)
	}
	return k, nil
}

// Load reads the key set in the file at path.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// NewID returns a key id for a key made at t: "k" and the UTC time to the
// second, e.g. k20261201T031500Z, so ids sort by age.
func NewID(t time.Time) string { return "k" + t.UTC().Format("20060102T150405Z") }

// Generate returns a set of one fresh random key with the id id.
func Generate(id string) (*Set, error) {
	k, err := randomKey()
	if err != nil {
		return nil, err
	}
	return New(id, map[string][]byte{id: k})
}

func randomKey() ([]byte, error) {
	k := make([]byte, KeyBytes)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// Rotate returns the set with a fresh random key under id as its primary;
// the other keys stay, for reading.
func (s *Set) Rotate(id string) (*Set, error) {
	if _, ok := s.keys[id]; ok {
		return nil, fmt.Errorf("%w: key id %q is taken", ErrKeySet, id)
	}
	k, err := randomKey()
	if err != nil {
		return nil, err
	}
	keys := make(map[string][]byte, len(s.keys)+1)
	for i, x := range s.keys {
		keys[i] = x
	}
	keys[id] = k
	return New(id, keys)
}

// Drop returns the set without the key id, which must not be the primary.
func (s *Set) Drop(id string) (*Set, error) {
	if id == s.primary {
		return nil, fmt.Errorf("%w: cannot drop the primary key %q", ErrKeySet, id)
	}
	if _, ok := s.keys[id]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, id)
	}
	keys := make(map[string][]byte, len(s.keys))
	for i, x := range s.keys {
		if i != id {
			keys[i] = x
		}
	}
	return New(s.primary, keys)
}

// Primary returns the primary key and its id.
func (s *Set) Primary() (id string, key []byte) { return s.primary, s.keys[s.primary] }

// Key returns the key with the id, or an error wrapping [ErrUnknownKey].
func (s *Set) Key(id string) ([]byte, error) {
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	return k, nil
}

// AEAD returns AES-256-GCM under the key with the id, or an error
// wrapping [ErrUnknownKey]. The AEAD is made once, when the set is.
func (s *Set) AEAD(id string) (cipher.AEAD, error) {
	a, ok := s.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	return a, nil
}

// PrimaryAEAD returns the id of the primary key and AES-256-GCM under it.
func (s *Set) PrimaryAEAD() (string, cipher.AEAD) { return s.primary, s.aeads[s.primary] }

// IDs returns the key ids, sorted.
func (s *Set) IDs() []string {
	out := make([]string, 0, len(s.keys))
	for id := range s.keys {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Marshal returns the JSON form of the set (keys sorted by id), with a
// final newline.
func (s *Set) Marshal() ([]byte, error) {
	f := file{Primary: s.primary, Keys: make(map[string]string, len(s.keys))}
	for id, k := range s.keys {
		f.Keys[id] = base64.StdEncoding.EncodeToString(k)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	return append(b, '\n'), err
}

// WriteFile writes the set to path with mode 0600, creating its directory
// (0700); it refuses to replace a file that exists.
func (s *Set) WriteFile(path string) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	return errors.Join(werr, serr, f.Close())
}
