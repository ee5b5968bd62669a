package fhirconsent_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

func TestIdentifierMatches(t *testing.T) {
	t.Parallel()
	id := fhirconsent.CanonicalIdentifier
	cases := []struct {
		name string
		a, b fhirconsent.Identifier
		want bool
	}{
		{"same system and value", id("urn:a", "1"), id("urn:a", "1"), true},
		{"trailing slash of the system", id("http://x.org/ids/", "1"), id("http://x.org/ids", "1"), true},
		{"both without system", id("", "1"), id("", "1"), true},
		{"other system", id("urn:a", "1"), id("urn:b", "1"), false},
		{"no system against a system", id("", "1"), id("urn:a", "1"), false},
		{"a system against none", id("urn:a", "1"), id("", "1"), false},
		{"other value", id("urn:a", "1"), id("urn:a", "2"), false},
		{"value case", id("urn:a", "ab"), id("urn:a", "AB"), false},
		{"no value", id("urn:a", ""), id("urn:a", ""), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.a.Matches(tc.b); got != tc.want {
				t.Errorf("%+v.Matches(%+v) = %t, want %t", tc.a, tc.b, got, tc.want)
			}
			if got := tc.b.Matches(tc.a); got != tc.want {
				t.Errorf("not symmetric: %+v.Matches(%+v) = %t", tc.b, tc.a, got)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"deny-53": true, "a.b-C9": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "a b": false, "a/b": false, "a_b": false, "ä": false, "a\x00": false,
	} {
		if got := fhirconsent.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %t, want %t", id, got, want)
		}
	}
}

func TestParseRefusesBadID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", strings.Repeat("a", 300), "a/b", "a b"} {
		_, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"` + id + `","status":"active","patient":{"reference":"Patient/1"}}`))
		var pe *fhirconsent.ParseError
		if !errors.As(err, &pe) || pe.Path != "id" {
			t.Errorf("id %q: %v, want a ParseError at id", id, err)
		}
	}
}

func TestProvisionCount(t *testing.T) {
	t.Parallel()
	cases := map[string]int{
		`{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/1"}}`:                                                                                                             1,
		`{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/1"},"provision":{"type":"permit","provision":[{"type":"deny","provision":[{"type":"permit"}]},{"type":"deny"}]}}`: 4,
		`{"resourceType":"Consent","status":"active","subject":{"reference":"Patient/1"},"decision":"deny","provision":[{},{"provision":[{}]}]}`:                                                       4,
	}
	for js, want := range cases {
		c, err := fhirconsent.Parse([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ProvisionCount(); got != want {
			t.Errorf("%s: ProvisionCount = %d, want %d", js, got, want)
		}
	}
}
