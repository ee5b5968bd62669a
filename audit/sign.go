package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/chaperone-pdp/chaperone/edkey"
)

// Signer signs checkpoints with an Ed25519 key.
//
// Keys are PEM files in the formats OpenSSL writes: the private key as
// PKCS #8 ("PRIVATE KEY", `openssl genpkey -algorithm ed25519`), the public
// key as PKIX ("PUBLIC KEY", `openssl pkey -pubout`). [GenerateKey] writes
// both.
type Signer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner signs with key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID is the id checkpoints name their key by: its RFC 7638 JWK
// thumbprint ([edkey.ID]), the id the same key has when it signs bundles.
func KeyID(pub ed25519.PublicKey) string { return edkey.ID(pub) }

// legacyKeyID is the id logs written before [KeyID] was the thumbprint
// name their key by (the first 16 hex digits of the SHA-256 of the raw
// key); verification still finds the key by it.
func legacyKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// KeyID is the id of the signer's key.
func (s *Signer) KeyID() string { return s.id }

// Public is the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

func (s *Signer) sign(head Head, at time.Time, closed bool) *Checkpoint {
	at = at.UTC()
	return &Checkpoint{
		Count:  head.Seq,
		Head:   head.Hash,
		Time:   at,
		KeyID:  s.id,
		Closed: closed,
		Sig:    ed25519.Sign(s.key, checkpointMessage(head.Seq, head.Hash, at, closed)),
	}
}

// checkpointMessage is what a checkpoint signature covers.
func checkpointMessage(count uint64, head string, at time.Time, closed bool) []byte {
	m := "chaperone-audit-checkpoint-v1\n" + strconv.FormatUint(count, 10) + "\n" + head + "\n" + at.UTC().Format(time.RFC3339Nano) + "\n"
	if closed {
		m += "closed\n"
	}
	return []byte(m)
}

// signOpening fills and signs the opening of a genesis or restart record
// chained onto head.
func (s *Signer) signOpening(kind Kind, o *Opening, head Head, at time.Time) *Opening {
	out := *o
	out.KeyID, out.PublicKey = s.id, s.Public()
	out.Count, out.Head = head.Seq, head.Hash
	out.Sig = ed25519.Sign(s.key, openingMessage(kind, &out, at))
	return &out
}

// openingMessage is what the signature of a genesis or restart covers.
func openingMessage(kind Kind, o *Opening, at time.Time) []byte {
	return []byte("chaperone-audit-opening-v1\n" + string(kind) + "\n" + o.Instance + "\n" + o.KeyID + "\n" +
		hex.EncodeToString(o.PublicKey) + "\n" + strconv.Itoa(o.CheckpointEvery) + "\n" +
		strconv.FormatInt(o.CheckpointIntervalMs, 10) + "\n" + strconv.FormatUint(o.Count, 10) + "\n" + o.Head + "\n" +
		at.UTC().Format(time.RFC3339Nano) + "\n")
}

// ErrKey means a key file is not an Ed25519 key in PEM.
var ErrKey = edkey.ErrKey

// LoadSigner reads a PKCS #8 PEM Ed25519 private key ([edkey.ReadPrivateKey]).
func LoadSigner(path string) (*Signer, error) {
	k, err := edkey.ReadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return NewSigner(k), nil
}

// LoadPublicKey reads a PKIX PEM Ed25519 public key (or derives it from a
// PKCS #8 private key file) ([edkey.ReadPublicKey]).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	k, err := edkey.ReadPublicKey(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return k, nil
}

// GenerateKey makes a new Ed25519 key pair and returns the PEM of the private
// key (PKCS #8) and of the public key (PKIX).
func GenerateKey() (private, public []byte, err error) {
	priv, err := edkey.Generate()
	if err != nil {
		return nil, nil, err
	}
	if private, err = edkey.MarshalPrivateKey(priv); err != nil {
		return nil, nil, err
	}
	public, err = edkey.MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	return private, public, err
}
