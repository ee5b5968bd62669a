package bundles

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// SignatureType is the "typ" header of a bundle signature.
const SignatureType = "chaperone-bundle+jws"

// PublicKey is a trusted verification key.
type PublicKey struct {
	// ID names the key in reports: its RFC 7638 JWK thumbprint (SHA-256,
	// base64url) unless the caller chose another name.
	ID  string
	Key ed25519.PublicKey
}

// KeyID returns the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub,
// the default key id of signatures and trusted keys.
func KeyID(pub ed25519.PublicKey) string {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(tp)
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
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an Ed25519 key", k)
	}
	return ek, nil
}

// ParsePublicKey decodes an Ed25519 public key from a PKIX PEM block; its
// ID is its thumbprint ([KeyID]).
func ParsePublicKey(data []byte) (PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return PublicKey{}, errors.New("not a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return PublicKey{}, err
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("%T is not an Ed25519 key", k)
	}
	return PublicKey{ID: KeyID(ek), Key: ek}, nil
}

// Sign adds a detached JWS signature (EdDSA) over the bundle manifest,
// with keyID as its "kid" header (the key's thumbprint when empty). A
// signature of the same key is replaced, so signing twice with one key
// still counts as one signer. The archive must be built.
func (a *Archive) Sign(key ed25519.PrivateKey, keyID string) error {
	if !a.Built() {
		return errors.New("sign: the bundle has no manifest; build it first")
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return errors.New("sign: not an Ed25519 key")
	}
	if keyID == "" {
		keyID = KeyID(pub)
	}
	opts := (&jose.SignerOptions{}).WithType(SignatureType).WithHeader(jose.HeaderKey("kid"), keyID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, opts)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	jws, err := signer.Sign(a.manifestRaw)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	compact, err := jws.DetachedCompactSerialize()
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	kept := a.signatures[:0:0]
	for _, s := range a.signatures {
		if checkSignature(s, a.manifestRaw, pub) == nil {
			continue
		}
		kept = append(kept, s)
	}
	a.signatures = append(kept, compact)
	return nil
}

// Signature is what a bundle signature claims, before it is verified.
type Signature struct {
	// KeyID is the "kid" header: a name the signer chose, not proof of who
	// signed.
	KeyID     string `json:"keyId"`
	Algorithm string `json:"algorithm"`
}

// Signatures lists the archive's signatures as they claim to be.
func (a *Archive) Signatures() []Signature {
	out := make([]Signature, 0, len(a.signatures))
	for _, s := range a.signatures {
		sig := Signature{KeyID: "?", Algorithm: "?"}
		if jws, err := jose.ParseDetached(s, a.manifestRaw, []jose.SignatureAlgorithm{jose.EdDSA}); err == nil && len(jws.Signatures) == 1 {
			sig.KeyID = jws.Signatures[0].Protected.KeyID
			sig.Algorithm = jws.Signatures[0].Protected.Algorithm
		}
		out = append(out, sig)
	}
	return out
}

// checkSignature verifies one detached JWS over payload with pub.
func checkSignature(compact string, payload []byte, pub ed25519.PublicKey) error {
	jws, err := jose.ParseDetached(compact, payload, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return err
	}
	if len(jws.Signatures) != 1 {
		return errors.New("want exactly one signature per JWS")
	}
	return jws.DetachedVerify(payload, pub)
}

// keyIDOf returns the "kid" header of a detached JWS, or "".
func keyIDOf(compact string, payload []byte) string {
	jws, err := jose.ParseDetached(compact, payload, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(jws.Signatures) != 1 {
		return ""
	}
	return jws.Signatures[0].Protected.KeyID
}
