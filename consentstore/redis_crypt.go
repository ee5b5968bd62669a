package consentstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealedPrefix marks a payload sealed with AES-GCM; a plaintext payload is
// JSON and starts with '{'.
const sealedPrefix = "\x00gcm1"

// ErrSealed is a payload that cannot be opened: it is sealed and the store
// has no key, or the key or the record does not match.
var ErrSealed = errors.New("consent payload cannot be decrypted")

// sealer encrypts consent payloads at rest. A nil sealer stores plaintext.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encryption key: want 16, 24 or 32 bytes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// additional binds a sealed payload to its patient and consent id, so a
// record copied under another key does not open.
func additional(patient, id string) []byte {
	return []byte(patient + "\x00" + id)
}

func (s *sealer) seal(plain []byte, patient, id string) (string, error) {
	if s == nil {
		return string(plain), nil
	}
	out := make([]byte, len(sealedPrefix)+s.aead.NonceSize(), len(sealedPrefix)+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	copy(out, sealedPrefix)
	nonce := out[len(sealedPrefix):]
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal consent: %w", err)
	}
	return string(s.aead.Seal(out, nonce, plain, additional(patient, id))), nil
}

// open returns the plaintext of a payload. A plaintext payload is accepted
// by a store with a key too (records written before encryption was turned
// on stay readable).
func (s *sealer) open(payload []byte, patient, id string) ([]byte, error) {
	if !bytes.HasPrefix(payload, []byte(sealedPrefix)) {
		return payload, nil
	}
	if s == nil {
		return nil, fmt.Errorf("%w: sealed, and no encryption key is configured", ErrSealed)
	}
	rest := payload[len(sealedPrefix):]
	n := s.aead.NonceSize()
	if len(rest) < n {
		return nil, ErrSealed
	}
	plain, err := s.aead.Open(nil, rest[:n], rest[n:], additional(patient, id))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealed, err)
	}
	return plain, nil
}
