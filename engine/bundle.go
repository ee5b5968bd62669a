package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/chaperone-pdp/chaperone/engine/consent"
)

// ManifestFile is the name of a policy directory's manifest.
const ManifestFile = "manifest.yaml"

// Combining rules a manifest may declare.
const (
	DenyOverrides = "deny-overrides"
)

// What a bundle declares a NO_CONSENT result to mean.
const (
	// NoConsentPolicy leaves the decision to the policies (HIPAA allows
	// treatment, payment and operations disclosures without consent).
	NoConsentPolicy = "policy"
	// NoConsentDeny denies every request about a patient without an
	// applicable consent.
	NoConsentDeny = "deny"
)

// Manifest describes a policy bundle.
type Manifest struct {
	// Name of the bundle, e.g. "reference".
	Name string `json:"name"`
	// Revision names this version of the bundle; every response carries it.
	Revision string `json:"revision"`
	// Combining rule of the layers; only deny-overrides is supported.
	Combining string `json:"combining,omitempty"`
	// NoConsent says what a request without an applicable consent means:
	// "policy" (default) or "deny".
	NoConsent string `json:"noConsent,omitempty"`
	// ConsentRule picks among several applicable consents: "most-recent"
	// (default) or "deny-overrides".
	ConsentRule string `json:"consentRule,omitempty"`
	// CacheTTL is how long callers may reuse an answer, e.g. "0s" or "30s".
	CacheTTL string `json:"cacheTtl,omitempty"`
	// TimeResolution is the precision of the decision time policies see
	// (default "1s"): coarser times let more decisions be memoised.
	TimeResolution string `json:"timeResolution,omitempty"`
	// Timezone in which context.hour and context.localTime are computed
	// for policies (IANA name, default UTC), unless TenantTimezones names
	// the subject's organization.
	Timezone string `json:"timezone,omitempty"`
	// TenantTimezones maps a tenant, the subject's organization
	// ("Organization/<id>"), to the IANA timezone its local time is
	// computed in. A name the timezone database does not know fails the
	// load (fail closed: office hours must never be computed in a guessed
	// zone).
	TenantTimezones map[string]string `json:"tenantTimezones,omitempty"`
	// Roles lists the role names the policies know. When set, a subject
	// holding any other role is denied UNKNOWN_ROLE (a respelt role would
	// otherwise escape the forbids written for it).
	Roles []string `json:"roles,omitempty"`
	// Labels lists, per code system, the security label codes the policies
	// know. When set, a resource carrying any other label is denied
	// UNKNOWN_SECURITY_LABEL instead of being read as unlabelled. Systems
	// are compared in canonical form (the urn:oid: spelling of a v3 code
	// system is the same system); a label without a system is known when
	// some listed system has its code.
	Labels map[string][]string `json:"labels,omitempty"`
}

// Bundle is a compiled policy directory, ready to decide. It is immutable.
type Bundle struct {
	manifest       Manifest
	cacheTTL       time.Duration
	timeResolution time.Duration
	location       *time.Location
	tenantZones    map[string]*time.Location // by subject.organization
	consentRule    consent.Rule
	roles          map[string]bool // nil: any role
	labels         labelSet        // nil: any label
	layers         []layer
	// readsRelationship: some policy names treatingRelationship, so the
	// engine looks the fact up.
	readsRelationship bool
	files             []string
}

// Manifest returns the bundle's manifest.
func (b *Bundle) Manifest() Manifest { return b.manifest }

// Revision returns the bundle's revision.
func (b *Bundle) Revision() string { return b.manifest.Revision }

// deterministic reports whether every layer's result follows from the
// facts: false when a Rego module calls a nondeterministic builtin
// (time.now_ns, http.send, …), and then nothing is memoised.
func (b *Bundle) deterministic() bool {
	for _, l := range b.layers {
		if r, ok := l.(*regoLayer); ok && !r.deterministic {
			return false
		}
	}
	return true
}

// Files lists the policy sources compiled into the bundle.
func (b *Bundle) Files() []string { return b.files }

// PolicyIDs lists the ids of every policy in the bundle, by layer.
func (b *Bundle) PolicyIDs() []string {
	var ids []string
	for _, l := range b.layers {
		ids = append(ids, l.policyIDs()...)
	}
	sort.Strings(ids)
	return ids
}

// CompileError reports a policy source that does not compile.
type CompileError struct {
	File string
	Err  error
}

func (e *CompileError) Error() string { return fmt.Sprintf("%s: %v", e.File, e.Err) }
func (e *CompileError) Unwrap() error { return e.Err }

// ErrNoPolicies is returned for a policy directory with no Cedar or Rego source.
var ErrNoPolicies = errors.New("no .cedar or .rego policy files")

// LoadBundle compiles the policy directory fsys: its manifest.yaml, every
// *.cedar file and every *.rego file (OPA v1 syntax), and JSON documents
// under data/ (available to Rego as data.<file name without .json>).
func LoadBundle(fsys fs.FS) (*Bundle, error) {
	raw, err := fs.ReadFile(fsys, ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := yaml.UnmarshalStrict(raw, &m); err != nil {
		return nil, &CompileError{File: ManifestFile, Err: err}
	}
	b := &Bundle{manifest: m}
	if err := b.applyManifest(); err != nil {
		return nil, &CompileError{File: ManifestFile, Err: err}
	}

	var cedarFiles, regoFiles, dataFiles []string
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(p, ".cedar"):
			cedarFiles = append(cedarFiles, p)
		case strings.HasSuffix(p, ".rego"):
			regoFiles = append(regoFiles, p)
		case strings.HasSuffix(p, ".json") && path.Dir(p) == "data":
			dataFiles = append(dataFiles, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk policy directory: %w", err)
	}
	if len(cedarFiles)+len(regoFiles) == 0 {
		return nil, ErrNoPolicies
	}
	for _, file := range append(append([]string(nil), cedarFiles...), regoFiles...) {
		src, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		b.readsRelationship = b.readsRelationship || bytes.Contains(src, []byte("treatingRelationship"))
	}
	model := NewPolicyModel()
	model.Roles = m.Roles
	var problems []Problem
	var cedarLayer *cedarLayer
	if len(cedarFiles) > 0 {
		l, ps, err := compileCedar(fsys, cedarFiles, model)
		if err != nil {
			return nil, err
		}
		problems = append(problems, ps...)
		cedarLayer = l
	}
	var regoLayer *regoLayer
	var regoIDs map[string][]regoID
	if len(regoFiles) > 0 {
		l, ps, ids, err := compileRego(fsys, regoFiles, dataFiles, model)
		if err != nil {
			return nil, err
		}
		problems = append(problems, ps...)
		regoLayer, regoIDs = l, ids
	}
	problems = append(problems, crossLayerIDs(cedarLayer, regoIDs)...)
	if len(problems) > 0 {
		return nil, newStaticCheckError(problems)
	}
	if cedarLayer != nil {
		b.layers = append(b.layers, cedarLayer)
	}
	if regoLayer != nil {
		b.layers = append(b.layers, regoLayer)
	}
	b.files = append(append(cedarFiles, regoFiles...), dataFiles...)
	return b, nil
}

func (b *Bundle) applyManifest() error {
	m := &b.manifest
	if m.Revision == "" {
		return errors.New("revision is required")
	}
	switch m.Combining {
	case "":
		m.Combining = DenyOverrides
	case DenyOverrides:
	default:
		return fmt.Errorf("combining %q is not supported (use %s)", m.Combining, DenyOverrides)
	}
	switch m.NoConsent {
	case "":
		m.NoConsent = NoConsentPolicy
	case NoConsentPolicy, NoConsentDeny:
	default:
		return fmt.Errorf("noConsent %q: want %q or %q", m.NoConsent, NoConsentPolicy, NoConsentDeny)
	}
	if m.ConsentRule == "" {
		m.ConsentRule = "most-recent"
	}
	rule, err := consent.ParseRule(m.ConsentRule)
	if err != nil {
		return fmt.Errorf("consentRule %q: want most-recent or deny-overrides", m.ConsentRule)
	}
	b.consentRule = rule
	if m.CacheTTL != "" {
		d, err := time.ParseDuration(m.CacheTTL)
		if err != nil || d < 0 {
			return fmt.Errorf("cacheTtl %q is not a duration", m.CacheTTL)
		}
		b.cacheTTL = d
	}
	b.timeResolution = time.Second
	if m.TimeResolution != "" {
		d, err := time.ParseDuration(m.TimeResolution)
		if err != nil || d < 0 {
			return fmt.Errorf("timeResolution %q is not a duration", m.TimeResolution)
		}
		b.timeResolution = d
	}
	b.location = time.UTC
	if m.Timezone != "" {
		loc, err := loadZone(m.Timezone)
		if err != nil {
			return fmt.Errorf("timezone: %w", err)
		}
		b.location = loc
	}
	for tenant, zone := range m.TenantTimezones {
		if !strings.HasPrefix(tenant, "Organization/") || len(tenant) == len("Organization/") {
			return fmt.Errorf("tenantTimezones: %q is not an organization reference (Organization/<id>)", tenant)
		}
		loc, err := loadZone(zone)
		if err != nil {
			return fmt.Errorf("tenantTimezones[%q]: %w", tenant, err)
		}
		if b.tenantZones == nil {
			b.tenantZones = map[string]*time.Location{}
		}
		b.tenantZones[tenant] = loc
	}
	if m.Roles != nil {
		b.roles = map[string]bool{}
		for _, r := range m.Roles {
			if r == "" {
				return errors.New("roles: an empty role name")
			}
			b.roles[r] = true
		}
	}
	ls, err := newLabelSet(m.Labels)
	if err != nil {
		return err
	}
	b.labels = ls
	return nil
}

// loadZone loads an IANA timezone. The empty name and "Local" are refused:
// time.LoadLocation reads them as UTC and as the machine's zone, and a
// bundle must mean the same on every replica.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%q is not an IANA timezone name", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	return loc, nil
}

// locationFor is the timezone of the subject's tenant: its entry in
// tenantTimezones, else the bundle's timezone.
func (b *Bundle) locationFor(organization string) *time.Location {
	if loc, ok := b.tenantZones[organization]; ok && organization != "" {
		return loc
	}
	return b.location
}
