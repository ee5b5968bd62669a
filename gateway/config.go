package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chaperone-pdp/chaperone/fhirrest"
)

// Resource phases: what enforces the resource phase behind the gateway.
const (
	PhaseProxy       = "proxy"
	PhaseApplication = "application"
	PhaseNone        = "none"
)

// Algorithms are the end-user token signature algorithms accepted.
func Algorithms() []string { return []string{"RS256", "ES256", "EdDSA"} }

// Config is the gateway file.
type Config struct {
	FHIRBase      string        `yaml:"fhirBase"`
	Tokens        TokenConfig   `yaml:"tokens"`
	Claims        ClaimNames    `yaml:"claims"`
	PurposeOfUse  PurposeConfig `yaml:"purposeOfUse"`
	ResourcePhase string        `yaml:"resourcePhase"`
}

// TokenConfig says which end-user tokens are accepted.
type TokenConfig struct {
	JWKS       string   `yaml:"jwks"`
	Issuer     string   `yaml:"issuer"`
	Audience   string   `yaml:"audience"`
	Algorithms []string `yaml:"algorithms"`
	// MaxLifetime caps exp - iat (a Go duration); "" means 24h.
	MaxLifetime string `yaml:"maxLifetime"`
}

// ClaimNames name the claim of each subject field; an empty name leaves
// the field empty (id excepted: it is required).
type ClaimNames struct {
	ID            string `yaml:"id"`
	Kind          string `yaml:"kind"`
	Roles         string `yaml:"roles"`
	Organization  string `yaml:"organization"`
	Scopes        string `yaml:"scopes"`
	ClientID      string `yaml:"clientId"`
	LaunchPatient string `yaml:"launchPatient"`
}

// PurposeConfig says where the purpose of use comes from: the header, else
// the default; with neither, the request is refused PURPOSE_REQUIRED.
type PurposeConfig struct {
	Header  string `yaml:"header"`
	Default string `yaml:"default"`
}

// ErrConfig matches every error of [Parse] and [Load].
var ErrConfig = errors.New("gateway config")

// Load reads and checks the gateway file at path. A relative tokens.jwks
// file is relative to the file's directory.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if j := c.Tokens.JWKS; !strings.Contains(j, "://") && !filepath.IsAbs(j) {
		c.Tokens.JWKS = filepath.Join(filepath.Dir(path), j)
	}
	return c, nil
}

// Parse reads and checks a gateway file. Unknown keys are an error naming
// them.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrConfig)
		}
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: one YAML document expected", ErrConfig)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &c, nil
}

func (c *Config) check() error {
	if _, err := fhirrest.New(c.FHIRBase); err != nil {
		return fmt.Errorf("fhirBase %q: %w", c.FHIRBase, err)
	}
	t := c.Tokens
	switch {
	case t.JWKS == "":
		return errors.New("tokens.jwks is required")
	case t.Issuer == "":
		return errors.New("tokens.issuer is required")
	case t.Audience == "":
		return errors.New("tokens.audience is required")
	}
	for _, a := range t.Algorithms {
		if !slices.Contains(Algorithms(), a) {
			return fmt.Errorf("tokens.algorithms: %q is not allowed (only %s)", a, strings.Join(Algorithms(), ", "))
		}
	}
	if _, err := c.maxLifetime(); err != nil {
		return err
	}
	if c.Claims.ID == "" {
		return errors.New("claims.id is required")
	}
	if h := c.PurposeOfUse.Header; h != "" && http.CanonicalHeaderKey(h) != http.CanonicalHeaderKey(strings.TrimSpace(h)) || strings.ContainsAny(c.PurposeOfUse.Header, " :\t") {
		return fmt.Errorf("purposeOfUse.header %q is not a header name", c.PurposeOfUse.Header)
	}
	switch c.ResourcePhase {
	case PhaseProxy, PhaseApplication, PhaseNone:
	case "":
		return errors.New("resourcePhase is required: proxy, application or none")
	default:
		return fmt.Errorf("resourcePhase %q: want proxy, application or none", c.ResourcePhase)
	}
	return nil
}

func (c *Config) maxLifetime() (time.Duration, error) {
	if c.Tokens.MaxLifetime == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.Tokens.MaxLifetime)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("tokens.maxLifetime %q: want a positive duration such as 1h", c.Tokens.MaxLifetime)
	}
	return d, nil
}

func (c *Config) algorithms() []string {
	if len(c.Tokens.Algorithms) == 0 {
		return Algorithms()
	}
	return c.Tokens.Algorithms
}
