package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/edkey"
)

// TestKeyIDsAreShared: a checkpoint key has the id the same key has as a
// bundle signer (one scheme, edkey.ID), and logs signed under the old id
// scheme still verify.
func TestKeyIDsAreShared(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	if s.KeyID() != bundles.KeyID(s.Public()) || s.KeyID() != edkey.ID(s.Public()) {
		t.Errorf("audit key id %q, bundle key id %q", s.KeyID(), bundles.KeyID(s.Public()))
	}
	legacy := audit.LegacyKeyIDSigner(s)
	if legacy.KeyID() == s.KeyID() {
		t.Fatal("the legacy id is the new id")
	}
	lines := writeChain(t, 6, legacy)
	if !bytes.Contains(bytes.Join(lines, nil), []byte(legacy.KeyID())) {
		t.Fatal("the log does not name the legacy key id")
	}
	if _, err := audit.Verify(entries(lines), s.Public()); err != nil {
		t.Errorf("a log under the legacy key id: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if _, err := audit.Verify(entries(lines), other); !errors.Is(err, audit.ErrUnknownKey) {
		t.Errorf("another key: %v, want ErrUnknownKey", err)
	}
	// A key written by edkey (both keygen commands) loads as a signer.
	name := filepath.Join(t.TempDir(), "k")
	id, err := edkey.WritePair(name)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := audit.LoadSigner(name + ".pem")
	if err != nil || ls.KeyID() != id {
		t.Fatalf("LoadSigner: %v, id %q want %q", err, ls.KeyID(), id)
	}
	pub, err := os.ReadFile(name + ".pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	if bk, err := bundles.ParsePublicKey(pub); err != nil || bk.ID != id {
		t.Errorf("bundles.ParsePublicKey: %v, id %q want %q", err, bk.ID, id)
	}
}
