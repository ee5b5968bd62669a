package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	// TenantTagSystem is the code system of the meta.tag that names a
	// resource's owning organization (its tenant); "" means none, and the
	// owner of a Patient is its managingOrganization.
	TenantTagSystem string `yaml:"tenantTagSystem"`
	// Attributes, when set, lets the door fetch the target of a read or
	// write by id from the FHIR server and decide it in the resource
	// phase.
	Attributes *AttributesConfig `yaml:"attributes"`
	// ChainedParameters allow-lists chained search parameters per
	// resource type (refused by default): see fhirrest.WithChains.
	ChainedParameters map[string][]string `yaml:"chainedParameters"`
}

// AttributesConfig says where and how the door fetches a target's
// attributes (patient, owning organization, meta.security).
type AttributesConfig struct {
	// FHIRServer is the base URL of the FHIR server (http or https),
	// without a query: the target is GET FHIRServer/Type/id.
	FHIRServer string `yaml:"fhirServer"`
	// Timeout bounds one fetch (a Go duration); "" means 2s.
	Timeout string `yaml:"timeout"`
	// MaxBodyBytes bounds the body of one fetch; 0 means 1 MiB. A longer
	// body is a failed fetch.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// CacheEntries bounds the cache of fetched attributes; 0 means 10000.
	CacheEntries int `yaml:"cacheEntries"`
	// BearerTokenFile, when set, is a file holding the token the door
	// sends to the FHIR server (Authorization: Bearer). It is read again
	// for every fetch, so a token rotated in place is used at once; a
	// file that cannot be read or is empty fails the fetch
	// (TARGET_UNAVAILABLE). Only with an https fhirServer, or one on a
	// loopback address.
	BearerTokenFile string `yaml:"bearerTokenFile"`
}

// Defaults of [AttributesConfig].
const (
	DefaultFetchTimeout      = 2 * time.Second
	DefaultFetchMaxBodyBytes = 1 << 20
	DefaultFetchCacheEntries = 10000
)

// FetchTimeout is the bound of one fetch.
func (a *AttributesConfig) FetchTimeout() time.Duration {
	d, err := time.ParseDuration(a.Timeout)
	if a.Timeout == "" || err != nil || d <= 0 {
		return DefaultFetchTimeout
	}
	return d
}

// MaxBody is the bound of one fetched body.
func (a *AttributesConfig) MaxBody() int64 {
	if a.MaxBodyBytes <= 0 {
		return DefaultFetchMaxBodyBytes
	}
	return a.MaxBodyBytes
}

// Entries is the bound of the cache.
func (a *AttributesConfig) Entries() int {
	if a.CacheEntries <= 0 {
		return DefaultFetchCacheEntries
	}
	return a.CacheEntries
}

func (a *AttributesConfig) check() error {
	u, err := url.Parse(a.FHIRServer)
	switch {
	case a.FHIRServer == "":
		return errors.New("attributes.fhirServer is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("attributes.fhirServer %q: want an http or https URL without query, fragment or user", a.FHIRServer)
	}
	if a.Timeout != "" {
		if d, err := time.ParseDuration(a.Timeout); err != nil || d <= 0 {
			return fmt.Errorf("attributes.timeout %q: want a positive duration such as 2s", a.Timeout)
		}
	}
	if a.MaxBodyBytes < 0 {
		return fmt.Errorf("attributes.maxBodyBytes %d: want a positive size", a.MaxBodyBytes)
	}
	if a.CacheEntries < 0 {
		return fmt.Errorf("attributes.cacheEntries %d: want a positive count", a.CacheEntries)
	}
	if a.BearerTokenFile != "" {
		if u.Scheme != "https" && !loopbackHost(u.Hostname()) {
			return fmt.Errorf("attributes.bearerTokenFile: the token would cross the network in clear text to %q; use an https fhirServer", a.FHIRServer)
		}
	}
	return nil
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readBearerToken reads the token of attributes.bearerTokenFile.
func readBearerToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s holds more than one token", path)
	}
	return tok, nil
}

// TokenConfig says which end-user tokens are accepted.
type TokenConfig struct {
	JWKS       string   `yaml:"jwks"`
	Issuer     string   `yaml:"issuer"`
	Audience   string   `yaml:"audience"`
	Algorithms []string `yaml:"algorithms"`
	// MaxLifetime caps exp - iat (a Go duration); "" means 24h.
	MaxLifetime string `yaml:"maxLifetime"`
	// Introspection, when set, also asks the issuer's OAuth 2.0 token
	// introspection endpoint (RFC 7662) whether an end user's token is
	// active.
	Introspection *IntrospectionConfig `yaml:"introspection"`
}

// IntrospectionConfig is the issuer's token introspection endpoint and
// Chaperone's client credentials for it.
type IntrospectionConfig struct {
	// URL is the endpoint (https, or http to a loopback host).
	URL      string `yaml:"url"`
	ClientID string `yaml:"clientId"`
	// ClientSecretFile holds the client secret; a relative path is
	// relative to the gateway file's directory.
	ClientSecretFile string `yaml:"clientSecretFile"`
	// Cache bounds how long an answer is reused (a Go duration), never
	// past the token's exp; "" means 30s.
	Cache string `yaml:"cache"`
}

func (i *IntrospectionConfig) cache() (time.Duration, error) {
	if i.Cache == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(i.Cache)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("tokens.introspection.cache %q: want a positive duration such as 30s", i.Cache)
	}
	return d, nil
}

func (i *IntrospectionConfig) check() error {
	switch {
	case i.URL == "":
		return errors.New("tokens.introspection.url is required")
	case i.ClientID == "":
		return errors.New("tokens.introspection.clientId is required")
	case i.ClientSecretFile == "":
		return errors.New("tokens.introspection.clientSecretFile is required")
	}
	_, err := i.cache()
	return err
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
// file (and tokens.introspection.clientSecretFile and
// attributes.bearerTokenFile, which must hold a token) is relative to the
// file's directory.
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
	if in := c.Tokens.Introspection; in != nil && !filepath.IsAbs(in.ClientSecretFile) {
		in.ClientSecretFile = filepath.Join(filepath.Dir(path), in.ClientSecretFile)
	}
	if a := c.Attributes; a != nil && a.BearerTokenFile != "" {
		if !filepath.IsAbs(a.BearerTokenFile) {
			a.BearerTokenFile = filepath.Join(filepath.Dir(path), a.BearerTokenFile)
		}
		if _, err := readBearerToken(a.BearerTokenFile); err != nil {
			return nil, fmt.Errorf("%s: %w: attributes.bearerTokenFile: %w", path, ErrConfig, err)
		}
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
	if _, err := fhirrest.New(c.FHIRBase, fhirrest.WithChains(c.ChainedParameters)); err != nil {
		return fmt.Errorf("chainedParameters: %w", err)
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
	if t.Introspection != nil {
		if err := t.Introspection.check(); err != nil {
			return err
		}
	}
	if c.Claims.ID == "" {
		return errors.New("claims.id is required")
	}
	if h := c.PurposeOfUse.Header; h != "" && http.CanonicalHeaderKey(h) != http.CanonicalHeaderKey(strings.TrimSpace(h)) || strings.ContainsAny(c.PurposeOfUse.Header, " :\t") {
		return fmt.Errorf("purposeOfUse.header %q is not a header name", c.PurposeOfUse.Header)
	}
	if s := c.TenantTagSystem; s != "" {
		if u, err := url.Parse(s); err != nil || u.Scheme == "" || strings.ContainsAny(s, " \t|") {
			return fmt.Errorf("tenantTagSystem %q: want an absolute URI", s)
		}
	}
	if c.Attributes != nil {
		if err := c.Attributes.check(); err != nil {
			return err
		}
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
