// Package edkey reads, writes and names the Ed25519 keys Chaperone signs
// with: policy bundles ([github.com/chaperone-pdp/chaperone/bundles]) and
// audit checkpoints ([github.com/chaperone-pdp/chaperone/audit]) use the same
// files and the same key ids.
//
// Keys are PEM files in the formats OpenSSL writes: the private key as
// PKCS #8 ("PRIVATE KEY", `openssl genpkey -algorithm ed25519`), the public
// key as PKIX ("PUBLIC KEY", `openssl pkey -pubout`). A key's id is its RFC
// 7638 JWK thumbprint (SHA-256, base64url), the same for every use ([ID]).
package edkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrKey means data is not an Ed25519 key in the expected PEM block.
var ErrKey = errors.New("not an Ed25519 key in PEM")

// ID is the key id of pub: its RFC 7638 JWK thumbprint, the base64url
// (unpadded) SHA-256 of {"crv":"Ed25519","kty":"OKP","x":"…"}.
func ID(pub ed25519.PublicKey) string {
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Generate makes a new key pair.
func Generate() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MarshalPrivateKey encodes key as a PKCS #8 "PRIVATE KEY" PEM block.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey encodes pub as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes an Ed25519 private key from a PKCS #8 PEM block.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w (want a \"PRIVATE KEY\" block)", ErrKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w (a %T)", ErrKey, k)
	}
	return ek, nil
}

// ParsePublicKey decodes an Ed25519 public key from a PKIX PEM block, or
// derives it from a PKCS #8 private key block.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, ErrKey
	}
	if block.Type == "PRIVATE KEY" {
		k, err := ParsePrivateKey(data)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w (want a \"PUBLIC KEY\" block)", ErrKey)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w (a %T)", ErrKey, k)
	}
	return ek, nil
}

// ReadPrivateKey reads a private key file.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPublicKey reads a public key file (or derives the key from a private
// key file).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WritePair generates a key pair and writes NAME.pem (private, mode 0600)
// and NAME.pub.pem (public); it returns the key id. It does not overwrite
// an existing private key file.
func WritePair(name string) (string, error) {
	priv, err := Generate()
	if err != nil {
		return "", err
	}
	pk, err := MarshalPrivateKey(priv)
	if err != nil {
		return "", err
	}
	pub := priv.Public().(ed25519.PublicKey)
	pp, err := MarshalPublicKey(pub)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(name+".pem", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(pk); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.WriteFile(name+".pub.pem", pp, 0o644); err != nil {
		return "", err
	}
	return ID(pub), nil
}
