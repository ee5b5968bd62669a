package consentstore

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/chaperone-pdp/chaperone/keyset"
)

// BenchmarkOpenPayload is the decryption of one consent payload (1 KiB) on
// a cache miss: keys=N opens under the key whose id the record names in a
// set of N keys; lookup=none is AES-GCM alone with the AEAD at hand (what
// the single-key store did), so the difference is the key id's parse and
// lookup.
func BenchmarkOpenPayload(b *testing.B) {
	plain := bytes.Repeat([]byte("x"), 1024)
	aad := additional("Patient/52", "c1")
	ks, err := keyset.Generate("k0")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 8} {
		for len(ks.IDs()) < n {
			if ks, err = ks.Rotate(fmt.Sprintf("k%d", len(ks.IDs()))); err != nil {
				b.Fatal(err)
			}
		}
		s := &sealer{keys: ks}
		payload, err := s.seal(plain, aad)
		if err != nil {
			b.Fatal(err)
		}
		sealed := []byte(payload)
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.open(sealed, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
		if n == 1 {
			kid, aead := ks.PrimaryAEAD()
			p := []byte(payload)
			rest := p[len(sealedPrefix)+1+len(kid):]
			ns := aead.NonceSize()
			b.Run("lookup=none", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := aead.Open(nil, rest[:ns], rest[ns:], aad); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
