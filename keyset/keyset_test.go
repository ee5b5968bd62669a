package keyset_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/keyset"
)

func b64(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		primary string
		ids     []string
		wantErr bool
	}{
		{name: "one base64 key", in: b64(1) + "\n", primary: keyset.DefaultID, ids: []string{keyset.DefaultID}},
		{name: "set of two", in: `{"primary":"k2","keys":{"k1":"` + b64(1) + `","k2":"` + b64(2) + `"}}`, primary: "k2", ids: []string{"k1", "k2"}},
		{name: "primary missing", in: `{"primary":"k3","keys":{"k1":"` + b64(1) + `"}}`, wantErr: true},
		{name: "no keys", in: `{"primary":"k1","keys":{}}`, wantErr: true},
		{name: "short key", in: `{"primary":"k1","keys":{"k1":"` + base64.StdEncoding.EncodeToString([]byte("short")) + `"}}`, wantErr: true},
		{name: "unknown field", in: `{"primary":"k1","keys":{"k1":"` + b64(1) + `"},"x":1}`, wantErr: true},
		{name: "bad id", in: `{"primary":"k 1","keys":{"k 1":"` + b64(1) + `"}}`, wantErr: true},
		{name: "long id", in: `{"primary":"` + strings.Repeat("k", 65) + `","keys":{"` + strings.Repeat("k", 65) + `":"` + b64(1) + `"}}`, wantErr: true},
		{name: "hex key", in: strings.Repeat("ab", 16), wantErr: true},
		{name: "16-byte key", in: base64.StdEncoding.EncodeToString(make([]byte, 16)), wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := keyset.Parse([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, keyset.ErrKeySet) {
					t.Fatalf("Parse = %v, want ErrKeySet", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id, k := s.Primary(); id != tc.primary || len(k) != keyset.KeyBytes {
				t.Errorf("primary %q (%d bytes), want %q", id, len(k), tc.primary)
			}
			if got := strings.Join(s.IDs(), ","); got != strings.Join(tc.ids, ",") {
				t.Errorf("ids %s, want %v", got, tc.ids)
			}
		})
	}
}

func TestRotateDropRoundTrip(t *testing.T) {
	t.Parallel()
	a, err := keyset.Generate("A")
	if err != nil {
		t.Fatal(err)
	}
	ab, err := a.Rotate("B")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ab.Rotate("A"); err == nil {
		t.Error("rotating to a taken id was accepted")
	}
	if id, _ := ab.Primary(); id != "B" {
		t.Errorf("primary after rotate %q", id)
	}
	ka, _ := a.Key("A")
	if k, err := ab.Key("A"); err != nil || !bytes.Equal(k, ka) {
		t.Errorf("old key lost on rotate: %v", err)
	}
	if _, err := ab.Drop("B"); err == nil {
		t.Error("dropping the primary was accepted")
	}
	b, err := ab.Drop("A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Key("A"); !errors.Is(err, keyset.ErrUnknownKey) {
		t.Errorf("dropped key still there: %v", err)
	}
	if _, err := b.AEAD("A"); !errors.Is(err, keyset.ErrUnknownKey) {
		t.Errorf("dropped key's AEAD still there: %v", err)
	}
	path := filepath.Join(t.TempDir(), "sub", "keys.json")
	if err := ab.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if err := ab.WriteFile(path); err == nil {
		t.Error("WriteFile replaced an existing file")
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v", st.Mode(), err)
	}
	back, err := keyset.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := ab.Marshal()
	m2, _ := back.Marshal()
	if !bytes.Equal(m1, m2) {
		t.Errorf("round trip:\n%s\n%s", m1, m2)
	}
}

// FuzzParse: a key file is outside input; Parse never panics, and what it
// accepts marshals and parses back to the same set.
func FuzzParse(f *testing.F) {
	f.Add([]byte(b64(1)))
	f.Add([]byte(`{"primary":"k2","keys":{"k1":"` + b64(1) + `","k2":"` + b64(2) + `"}}`))
	f.Add([]byte(`{"primary":"","keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := keyset.Parse(data)
		if err != nil {
			if !errors.Is(err, keyset.ErrKeySet) {
				t.Fatalf("error not ErrKeySet: %v", err)
			}
			return
		}
		m, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := keyset.Parse(m)
		if err != nil {
			t.Fatalf("accepted set does not parse back: %v\n%s", err, m)
		}
		m2, _ := back.Marshal()
		if !bytes.Equal(m, m2) {
			t.Fatalf("round trip differs:\n%s\n%s", m, m2)
		}
	})
}
