package edkey_test

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/chaperone-pdp/chaperone/edkey"
)

// TestIDIsTheJWKThumbprint holds ID to jwx's RFC 7638 thumbprint.
func TestIDIsTheJWKThumbprint(t *testing.T) {
	t.Parallel()
	for range 50 {
		priv, err := edkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		pub := priv.Public().(ed25519.PublicKey)
		k, err := jwk.Import(pub)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := edkey.ID(pub), base64.RawURLEncoding.EncodeToString(tp); got != want {
			t.Fatalf("ID %s, thumbprint %s", got, want)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "k")
	id, err := edkey.WritePair(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edkey.WritePair(name); err == nil {
		t.Error("an existing private key was overwritten")
	}
	priv, err := edkey.ReadPrivateKey(name + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := edkey.ReadPublicKey(name + ".pub.pem")
	if err != nil || edkey.ID(pub) != id || !pub.Equal(priv.Public()) {
		t.Fatalf("public key %v, id %q want %q", err, edkey.ID(pub), id)
	}
	if st, _ := os.Stat(name + ".pem"); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode().Perm())
	}
	if fromPriv, err := edkey.ReadPublicKey(name + ".pem"); err != nil || !fromPriv.Equal(pub) {
		t.Errorf("public key from the private key file: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("not pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if _, err := edkey.ParsePublicKey(bad); !errors.Is(err, edkey.ErrKey) {
			t.Errorf("ParsePublicKey(%q) = %v", bad, err)
		}
		if _, err := edkey.ParsePrivateKey(bad); !errors.Is(err, edkey.ErrKey) {
			t.Errorf("ParsePrivateKey(%q) = %v", bad, err)
		}
	}
}
