package gateway_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/gateway"
)

const validConfig = `fhirBase: /fhir
tokens:
  jwks: keys.json
  issuer: https://auth.example.org
  audience: https://fhir.example.org
claims:
  id: fhirUser
  kind: kind
  roles: roles
  organization: org
  scopes: scope
  clientId: client_id
  launchPatient: patient
purposeOfUse:
  header: X-Purpose-Of-Use
  default: TREAT
resourcePhase: proxy
`

func TestParseConfig(t *testing.T) {
	t.Parallel()
	edit := func(old, new string) string { return strings.Replace(validConfig, old, new, 1) }
	tests := []struct {
		name    string
		yaml    string
		wantErr string // "" when valid
	}{
		{"the pinned example", validConfig, ""},
		{"application phase", edit("resourcePhase: proxy", "resourcePhase: application"), ""},
		{"no resource enforcement", edit("resourcePhase: proxy", "resourcePhase: none"), ""},
		{"an allowed algorithm subset", edit("  audience: https://fhir.example.org", "  audience: https://fhir.example.org\n  algorithms: [ES256, EdDSA]"), ""},
		{"a lifetime cap", edit("  audience: https://fhir.example.org", "  audience: https://fhir.example.org\n  maxLifetime: 1h"), ""},
		{"a tenant tag system", validConfig + "tenantTagSystem: https://example.org/tenant\n", ""},
		{"a tenant tag system that is not a URI", validConfig + "tenantTagSystem: tenant\n", "tenantTagSystem"},
		{"attributes from a FHIR server", validConfig + "attributes:\n  fhirServer: http://127.0.0.1:8080/fhir\n  timeout: 500ms\n  maxBodyBytes: 65536\n  cacheEntries: 100\n", ""},
		{"attributes without a server", validConfig + "attributes: {}\n", "attributes.fhirServer"},
		{"attributes from a relative server", validConfig + "attributes:\n  fhirServer: /fhir\n", "attributes.fhirServer"},
		{"attributes from a server with a query", validConfig + "attributes:\n  fhirServer: https://fhir.example.org/?x=1\n", "attributes.fhirServer"},
		{"attributes from a file URL", validConfig + "attributes:\n  fhirServer: file:///etc\n", "attributes.fhirServer"},
		{"attributes with a bad timeout", validConfig + "attributes:\n  fhirServer: https://fhir.example.org\n  timeout: soon\n", "attributes.timeout"},
		{"attributes with a negative size", validConfig + "attributes:\n  fhirServer: https://fhir.example.org\n  maxBodyBytes: -1\n", "attributes.maxBodyBytes"},
		{"an unknown key under attributes", validConfig + "attributes:\n  fhirServer: https://fhir.example.org\n  fhirserver: x\n", "fhirserver"},
		{"an unknown top-level key", validConfig + "fhirbase: /other\n", "fhirbase"},
		{"an unknown key under tokens", edit("  issuer:", "  isuer: x\n  issuer:"), "isuer"},
		{"an unknown key under claims", edit("  kind: kind", "  kinds: kind"), "kinds"},
		{"an unknown key under purposeOfUse", edit("  default: TREAT", "  defualt: TREAT"), "defualt"},
		{"HS256", edit("  audience: https://fhir.example.org", "  audience: https://fhir.example.org\n  algorithms: [HS256]"), "HS256"},
		{"none", edit("  audience: https://fhir.example.org", "  audience: https://fhir.example.org\n  algorithms: [ES256, none]"), "none"},
		{"RS384 is not in the set", edit("  audience: https://fhir.example.org", "  audience: https://fhir.example.org\n  algorithms: [RS384]"), "RS384"},
		{"a bad lifetime", edit("  audience: https://fhir.example.org", "  audience: https://fhir.example.org\n  maxLifetime: forever"), "maxLifetime"},
		{"no jwks", edit("  jwks: keys.json\n", ""), "tokens.jwks"},
		{"no issuer", edit("  issuer: https://auth.example.org\n", ""), "tokens.issuer"},
		{"no audience", edit("  audience: https://fhir.example.org\n", ""), "tokens.audience"},
		{"no id claim", edit("  id: fhirUser\n", ""), "claims.id"},
		{"no resource phase", edit("resourcePhase: proxy\n", ""), "resourcePhase"},
		{"a wrong resource phase", edit("resourcePhase: proxy", "resourcePhase: gateway"), "gateway"},
		{"a relative FHIR base", edit("fhirBase: /fhir", "fhirBase: fhir"), "fhirBase"},
		{"a header name with a colon", edit("header: X-Purpose-Of-Use", "header: 'X-Purpose: x'"), "purposeOfUse.header"},
		{"two documents", validConfig + "---\nfhirBase: /x\n", "one YAML document"},
		{"empty", "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := gateway.Parse([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.ResourcePhase == "" || cfg.Tokens.Issuer != "https://auth.example.org" {
					t.Fatalf("config %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted it")
			}
			if !errors.Is(err, gateway.ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadResolvesJWKSBesideTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(validConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "keys.json"); cfg.Tokens.JWKS != want {
		t.Fatalf("jwks %q, want %q", cfg.Tokens.JWKS, want)
	}
	if _, err := gateway.Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, gateway.ErrConfig) {
		t.Fatalf("missing file: %v", err)
	}
}
