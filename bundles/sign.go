package bundles

import (
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/chaperone-pdp/chaperone/edkey"
)

// SignatureType is the "typ" header of a bundle signature.
const SignatureType = "chaperone-bundle+jws"

// PublicKey is a trusted verification key.
type PublicKey struct {
	// ID names the key in reports: its RFC 7638 JWK thumbprint
	// ([edkey.ID]) unless the caller chose another name.
	ID  string
	Key ed25519.PublicKey
}

// KeyID returns the key id of pub: its RFC 7638 JWK thumbprint (SHA-256,
// base64url), the id of the same key in audit checkpoints ([edkey.ID]).
func KeyID(pub ed25519.PublicKey) string { return edkey.ID(pub) }

// MarshalPrivateKey encodes key as a PKCS #8 "PRIVATE KEY" PEM block
// ([edkey.MarshalPrivateKey]).
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) { return edkey.MarshalPrivateKey(key) }

// MarshalPublicKey encodes pub as a PKIX "PUBLIC KEY" PEM block
// ([edkey.MarshalPublicKey]).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) { return edkey.MarshalPublicKey(pub) }

// ParsePrivateKey decodes an Ed25519 private key from a PKCS #8 PEM block
// ([edkey.ParsePrivateKey]).
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) { return edkey.ParsePrivateKey(data) }

// ParsePublicKey decodes an Ed25519 public key from a PKIX PEM block; its
// ID is its thumbprint ([KeyID]).
func ParsePublicKey(data []byte) (PublicKey, error) {
	if block, _ := pem.Decode(data); block == nil || block.Type != "PUBLIC KEY" {
		return PublicKey{}, errors.New("not a PEM \"PUBLIC KEY\" block")
	}
	k, err := edkey.ParsePublicKey(data)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{ID: KeyID(k), Key: k}, nil
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
	h := jws.NewHeaders()
	if err := errors.Join(h.Set(jws.TypeKey, SignatureType), h.Set(jws.KeyIDKey, keyID)); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	raw, err := jws.Sign(nil, jws.WithKey(jwa.EdDSA(), key, jws.WithProtectedHeaders(h)), jws.WithDetachedPayload(a.manifestRaw))
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	compact := string(raw)
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
		if h, ok := protected(s); ok {
			if kid, ok := h.KeyID(); ok {
				sig.KeyID = kid
			}
			if alg, ok := h.Algorithm(); ok {
				sig.Algorithm = alg.String()
			}
		}
		out = append(out, sig)
	}
	return out
}

// protected returns the protected header of a detached compact JWS with
// exactly one signature.
func protected(compact string) (jws.Headers, bool) {
	m, err := jws.Parse([]byte(compact))
	if err != nil || len(m.Signatures()) != 1 {
		return nil, false
	}
	return m.Signatures()[0].ProtectedHeaders(), true
}

// checkSignature verifies one detached JWS over payload with pub: EdDSA
// only, no unknown critical header.
func checkSignature(compact string, payload []byte, pub ed25519.PublicKey) error {
	if strings.Count(compact, ".") != 2 || !strings.Contains(compact, "..") {
		return errors.New("not a detached compact JWS")
	}
	h, ok := protected(compact)
	if !ok {
		return errors.New("want exactly one signature per JWS")
	}
	if alg, ok := h.Algorithm(); !ok || alg != jwa.EdDSA() {
		return errors.New("signature algorithm is not EdDSA")
	}
	_, err := jws.Verify([]byte(compact), jws.WithKey(jwa.EdDSA(), pub), jws.WithDetachedPayload(payload))
	return err
}

// keyIDOf returns the "kid" header of a detached JWS, or "".
func keyIDOf(compact string, _ []byte) string {
	h, ok := protected(compact)
	if !ok {
		return ""
	}
	kid, _ := h.KeyID()
	return kid
}
