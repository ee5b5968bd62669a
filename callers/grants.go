package callers

import (
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// AuthzConfig is the caller authorization file (YAML, see --callers):
//
//	# Procedures any authenticated caller may use. Default (when the key is
//	# absent): the DecisionService and gRPC reflection.
//	anyAuthenticated:
//	  - chaperone.v1.DecisionService
//	  - grpc.reflection.v1.ServerReflection
//	  - grpc.reflection.v1alpha.ServerReflection
//	callers:
//	  - name: ehr-gateway                      # for logs
//	    mtls: [spiffe://example.org/ns/ehr/sa/gateway]   # a URI matches URI SANs only
//	    allow: [chaperone.v1.DecisionService]
//	  - name: consent-importer
//	    subjects: [svc-consent-import]         # token sub
//	    clients: [consent-import]              # token client_id / azp
//	    allow: [chaperone.v1.ConsentService]
//	    rateLimit: {perSecond: 50, burst: 100} # overrides --rate-limit
//	  - name: platform-admin
//	    mtls: [spiffe://example.org/ns/ops/sa/admin]
//	    allow: ["*"]
//
// An mtls entry written as a URI (scheme://…, e.g. a SPIFFE id) matches only
// a certificate's URI SANs; any other entry is a DNS name and matches only
// its DNS SANs. The two never mix: a DNS SAN spelt "spiffe://…" matches no
// SPIFFE id.
//
// An allow entry is "*" (everything), a full service name
// ("chaperone.v1.ConsentService": all its methods, including ones added
// later) or a method ("chaperone.v1.ConsentService/Put"). Everything not
// open to any authenticated caller needs a grant: ConsentService (reads
// too: consents are PHI), AccessService, AgreementService,
// RelationshipService, BundleService
// and the AuthZEN door, authorized as the methods Evaluation, Evaluations
// and Configuration of authzen.v1.AccessEvaluationService (see package
// authzen).
type AuthzConfig struct {
	AnyAuthenticated []string      `json:"anyAuthenticated,omitempty"`
	Callers          []CallerGrant `json:"callers,omitempty"`
}

// CallerGrant is one caller of the authorization file: how it is
// recognised (any of its mTLS identities, token subjects or client ids)
// and what it may call.
type CallerGrant struct {
	Name      string    `json:"name"`
	MTLS      []string  `json:"mtls,omitempty"`
	Subjects  []string  `json:"subjects,omitempty"`
	Clients   []string  `json:"clients,omitempty"`
	Allow     []string  `json:"allow"`
	RateLimit *RateSpec `json:"rateLimit,omitempty"`
}

// DefaultAnyAuthenticated are the services any authenticated caller may
// use unless the authorization file says otherwise.
func DefaultAnyAuthenticated() []string {
	return []string{
		"chaperone.v1.DecisionService",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
	}
}

// LoadAuthzConfig reads the authorization file at path. Unknown keys are
// errors, so a misspelt "alow" does not silently grant nothing.
func LoadAuthzConfig(path string) (AuthzConfig, error) {
	var cfg AuthzConfig
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("callers: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("callers %s: %w", path, err)
	}
	return cfg, nil
}

// DeniedError is a caller's request for a procedure it was not granted.
type DeniedError struct {
	CallerID  string
	Procedure string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("caller %q may not call %s", e.CallerID, e.Procedure)
}

// Unwrap makes a DeniedError match [ErrPermissionDenied].
func (e *DeniedError) Unwrap() error { return ErrPermissionDenied }

// Authorizer decides which caller may call which procedure, by the full
// procedure name ("/chaperone.v1.ConsentService/Put"), so services added
// later are covered without code changes: closed unless granted.
type Authorizer struct {
	open     rules
	grants   []grant
	uris     map[string][]int // certificate URI SAN → indexes into grants
	dns      map[string][]int // certificate DNS SAN → indexes into grants
	subjects map[string][]int
	clients  map[string][]int
}

type rules struct {
	all        bool
	services   map[string]bool // "chaperone.v1.ConsentService"
	procedures map[string]bool // "/chaperone.v1.ConsentService/Put"
}

type grant struct {
	name  string
	allow rules
	rate  *RateSpec
}

// NewAuthorizer compiles cfg.
func NewAuthorizer(cfg AuthzConfig) (*Authorizer, error) {
	openList := cfg.AnyAuthenticated
	if openList == nil {
		openList = DefaultAnyAuthenticated()
	}
	a := &Authorizer{
		uris:     map[string][]int{},
		dns:      map[string][]int{},
		subjects: map[string][]int{},
		clients:  map[string][]int{},
	}
	var err error
	if a.open, err = compileRules(openList); err != nil {
		return nil, fmt.Errorf("callers: anyAuthenticated: %w", err)
	}
	for i, c := range cfg.Callers {
		if c.Name == "" {
			return nil, fmt.Errorf("callers[%d]: a name is required", i)
		}
		if len(c.MTLS)+len(c.Subjects)+len(c.Clients) == 0 {
			return nil, fmt.Errorf("callers[%d] %q: no mtls, subjects or clients to recognise it by", i, c.Name)
		}
		r, err := compileRules(c.Allow)
		if err != nil {
			return nil, fmt.Errorf("callers[%d] %q: %w", i, c.Name, err)
		}
		if c.RateLimit != nil {
			if err := c.RateLimit.validate(); err != nil {
				return nil, fmt.Errorf("callers[%d] %q: rateLimit: %w", i, c.Name, err)
			}
		}
		a.grants = append(a.grants, grant{name: c.Name, allow: r, rate: c.RateLimit})
		for _, id := range c.MTLS {
			if strings.Contains(id, "://") {
				a.uris[id] = append(a.uris[id], i)
			} else {
				a.dns[id] = append(a.dns[id], i)
			}
		}
		for _, id := range c.Subjects {
			a.subjects[id] = append(a.subjects[id], i)
		}
		for _, id := range c.Clients {
			a.clients[id] = append(a.clients[id], i)
		}
	}
	return a, nil
}

func compileRules(list []string) (rules, error) {
	r := rules{services: map[string]bool{}, procedures: map[string]bool{}}
	for _, p := range list {
		switch svc, method, hasMethod := strings.Cut(p, "/"); {
		case p == "*":
			r.all = true
		case !validFullName(svc):
			return r, fmt.Errorf("%q: want \"*\", a full service name such as chaperone.v1.ConsentService, or Service/Method", p)
		case !hasMethod:
			r.services[svc] = true
		case method == "" || strings.ContainsAny(method, "/.*"):
			return r, fmt.Errorf("%q: bad method name", p)
		default:
			r.procedures["/"+p] = true
		}
	}
	return r, nil
}

// validFullName accepts a dotted protobuf name with at least a package.
func validFullName(s string) bool {
	if !strings.Contains(s, ".") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func (r *rules) allows(procedure, service string) bool {
	return r.all || r.services[service] || r.procedures[procedure]
}

// Authorize returns nil when c may call procedure, else a [*DeniedError].
// Anonymous callers (no authentication configured) may call everything.
func (a *Authorizer) Authorize(c *Caller, procedure string) error {
	if c.Anonymous {
		return nil
	}
	service, ok := ServiceOf(procedure)
	if ok && a.open.allows(procedure, service) {
		return nil
	}
	if ok {
		allowed := false
		a.eachGrant(c, func(g *grant) bool {
			allowed = g.allow.allows(procedure, service)
			return !allowed
		})
		if allowed {
			return nil
		}
	}
	return &DeniedError{CallerID: c.ID, Procedure: procedure}
}

// RateFor returns the rate limit of the first grant of c that sets one,
// or nil.
func (a *Authorizer) RateFor(c *Caller) *RateSpec {
	var spec *RateSpec
	a.eachGrant(c, func(g *grant) bool {
		spec = g.rate
		return spec == nil
	})
	return spec
}

// eachGrant calls f for each grant matching one of c's identities until f
// returns false. A caller proven by both a certificate and a token has the
// grants of both.
func (a *Authorizer) eachGrant(c *Caller, f func(*grant) bool) {
	for _, id := range c.URIs {
		for _, i := range a.uris[id] {
			if !f(&a.grants[i]) {
				return
			}
		}
	}
	for _, id := range c.DNSNames {
		for _, i := range a.dns[id] {
			if !f(&a.grants[i]) {
				return
			}
		}
	}
	if c.Subject != "" {
		for _, i := range a.subjects[c.Subject] {
			if !f(&a.grants[i]) {
				return
			}
		}
	}
	if c.ClientID != "" {
		for _, i := range a.clients[c.ClientID] {
			if !f(&a.grants[i]) {
				return
			}
		}
	}
}

// ServiceOf splits a procedure path "/pkg.Service/Method" and returns the
// service; ok is false for anything else.
func ServiceOf(path string) (string, bool) {
	if len(path) < 4 || path[0] != '/' {
		return "", false
	}
	svc, method, ok := strings.Cut(path[1:], "/")
	if !ok || method == "" || strings.IndexByte(method, '/') >= 0 || !validFullName(svc) {
		return "", false
	}
	return svc, true
}
