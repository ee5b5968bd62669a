package consentstore

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/chaperone-pdp/chaperone/keyset"
)

// Sealed payloads. A payload sealed under a key set is
//
//	"\x00gcm2" | len(key id) (one byte) | key id | nonce (12 bytes) | AES-256-GCM ciphertext
//
// and one sealed before key ids were stored ("\x00gcm1" | nonce |
// ciphertext) is opened with the key whose id is [keyset.DefaultID]. A
// plaintext payload is JSON and starts with '{'.
const (
	sealedPrefixV1 = "\x00gcm1"
	sealedPrefix   = "\x00gcm2"
)

// ErrSealed is a payload that cannot be opened: it is sealed and the store
// has no key, the key id it names is not in the store's key set, or the key
// or the record does not match. A store with a key set also refuses a
// payload in clear text ([ErrCleartext] wraps ErrSealed): it may have been
// written by someone without the key.
var ErrSealed = errors.New("consent payload cannot be decrypted")

// ErrCleartext is a payload in clear text read by a store that encrypts:
// refused, so a record written into Redis by someone without the key never
// takes part in a decision. chaperone consent reencrypt seals such records.
var ErrCleartext = fmt.Errorf("%w: stored in clear text, and the store encrypts", ErrSealed)

// WithEncryptionKey encrypts consent payloads, grants and agreements at
// rest with AES-256-GCM under key (32 bytes), a key set of one whose id
// is [keyset.DefaultID]. See [WithKeySet].
func WithEncryptionKey(key []byte) RedisOption {
	return func(r *Redis) error {
		ks, err := keyset.New(keyset.DefaultID, map[string][]byte{keyset.DefaultID: key})
		if err != nil {
			return fmt.Errorf("encryption key: %w", err)
		}
		r.aead = &sealer{keys: ks}
		return nil
	}
}

// WithKeySet encrypts consent payloads, break-glass grants and vendor
// agreements at rest with AES-256-GCM: new writes under the set's primary
// key, reads under the key whose id is stored with the record. A record
// under a key id the set does not hold, or in clear text, fails closed
// ([ErrSealed]). Off by default in this package; chaperone serve turns it
// on whenever Redis is used.
func WithKeySet(ks *keyset.Set) RedisOption {
	return func(r *Redis) error {
		if ks == nil {
			return errors.New("key set: nil")
		}
		r.aead = &sealer{keys: ks}
		return nil
	}
}

// sealer encrypts payloads at rest. A nil sealer stores plaintext.
type sealer struct {
	keys *keyset.Set
}

// additional binds a sealed consent payload to its patient and consent
// id, so a record copied under another key does not open.
func additional(patient, id string) []byte {
	return []byte(patient + "\x00" + id)
}

// grantAdditional and agreementAdditional bind grants and agreements to
// where they are stored, apart from consents.
func grantAdditional(patient, id string) []byte  { return []byte("grant\x00" + patient + "\x00" + id) }
func agreementAdditional(clientID string) []byte { return []byte("agreement\x00" + clientID) }

func (s *sealer) seal(plain, aad []byte) (string, error) {
	if s == nil {
		return string(plain), nil
	}
	kid, aead := s.keys.PrimaryAEAD()
	n := len(sealedPrefix) + 1 + len(kid) + aead.NonceSize()
	out := make([]byte, n, n+len(plain)+aead.Overhead())
	copy(out, sealedPrefix)
	out[len(sealedPrefix)] = byte(len(kid))
	copy(out[len(sealedPrefix)+1:], kid)
	nonce := out[n-aead.NonceSize():]
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return string(aead.Seal(out, nonce, plain, aad)), nil
}

// keyID returns the key id a payload is sealed under ("" in clear text).
func keyID(payload []byte) (string, bool) {
	switch {
	case bytes.HasPrefix(payload, []byte(sealedPrefix)):
		rest := payload[len(sealedPrefix):]
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return "", false
		}
		return string(rest[1 : 1+int(rest[0])]), true
	case bytes.HasPrefix(payload, []byte(sealedPrefixV1)):
		return keyset.DefaultID, true
	}
	return "", true
}

// open returns the plaintext of a payload, opened with the key whose id it
// names. A store without keys reads clear text only; a store with keys
// reads sealed payloads only.
func (s *sealer) open(payload, aad []byte) ([]byte, error) {
	sealed := isSealed(payload)
	switch {
	case !sealed && s == nil:
		return payload, nil
	case !sealed:
		return nil, ErrCleartext
	case s == nil:
		return nil, fmt.Errorf("%w: sealed, and no encryption key is configured", ErrSealed)
	}
	kid, ok := keyID(payload)
	if !ok {
		return nil, fmt.Errorf("%w: malformed", ErrSealed)
	}
	aead, err := s.keys.AEAD(kid)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealed, err)
	}
	rest := payload[len(sealedPrefixV1):]
	if bytes.HasPrefix(payload, []byte(sealedPrefix)) {
		rest = payload[len(sealedPrefix)+1+len(kid):]
	}
	n := aead.NonceSize()
	if len(rest) < n {
		return nil, fmt.Errorf("%w: malformed", ErrSealed)
	}
	plain, err := aead.Open(nil, rest[:n], rest[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrSealed, kid, err)
	}
	return plain, nil
}

// current reports whether a payload is sealed under the primary key (in
// the current format): what reencryption leaves alone.
func (s *sealer) current(payload []byte) bool {
	if s == nil {
		return !isSealed(payload)
	}
	kid, ok := keyID(payload)
	primary, _ := s.keys.Primary()
	return ok && bytes.HasPrefix(payload, []byte(sealedPrefix)) && kid == primary
}

// isSealed reports whether the payload is sealed (well formed or not).
func isSealed(payload []byte) bool {
	return bytes.HasPrefix(payload, []byte(sealedPrefix)) || bytes.HasPrefix(payload, []byte(sealedPrefixV1))
}
