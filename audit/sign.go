package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
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

// KeyID is the id checkpoints name their key by: the first 16 hex digits of
// the SHA-256 of the raw public key.
func KeyID(pub ed25519.PublicKey) string {
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
var ErrKey = errors.New("not an Ed25519 key in PEM")

// LoadSigner reads a PKCS #8 PEM Ed25519 private key.
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: %w (want a \"PRIVATE KEY\" block)", path, ErrKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w: %v", path, ErrKey, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %w (a %T)", path, ErrKey, k)
	}
	return NewSigner(ek), nil
}

// LoadPublicKey reads a PKIX PEM Ed25519 public key (or derives it from a
// PKCS #8 private key file).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("public key %s: %w", path, ErrKey)
	}
	if blk.Type == "PRIVATE KEY" {
		s, err := LoadSigner(path)
		if err != nil {
			return nil, err
		}
		return s.Public(), nil
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w: %v", path, ErrKey, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s: %w (a %T)", path, ErrKey, k)
	}
	return ek, nil
}

// GenerateKey makes a new Ed25519 key pair and returns the PEM of the private
// key (PKCS #8) and of the public key (PKIX).
func GenerateKey() (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pp, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pp}), nil
}
