package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/fhirrest"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// PhaseRequest is context.phase of every decision of the door.
const PhaseRequest = "request"

// Reason codes of refusals the door makes itself, before the engine.
const (
	// ReasonUnauthenticated: no end-user token, or a bad one (401).
	ReasonUnauthenticated = "UNAUTHENTICATED"
	// ReasonPurposeRequired: no purpose header and no default.
	ReasonPurposeRequired = "PURPOSE_REQUIRED"
	// ReasonOriginalRequest: the gateway did not say which request it is
	// about (method or URI header missing, repeated or contradictory).
	ReasonOriginalRequest = "ORIGINAL_REQUEST_REQUIRED"
	// ReasonMethodOverride: a method override header, which some servers
	// honour, would run another interaction than the one mapped.
	ReasonMethodOverride = "METHOD_OVERRIDE"
	// ReasonTypeRequired: a system-level request (or Patient/p/*): the
	// door decides one resource type at a time.
	ReasonTypeRequired = "TYPE_REQUIRED"
	// ReasonInvalidRequest: the request breaks the API's rules (a token
	// claim that is not a FHIR reference, for one).
	ReasonInvalidRequest = "INVALID_REQUEST"
	// ReasonNoResourceEnforcement: an ALLOW that needs the resource phase
	// with resourcePhase none.
	ReasonNoResourceEnforcement = "NO_RESOURCE_ENFORCEMENT"
)

// Refusal is a request the door answers without a decision of the engine:
// 401 for the token, 403 for a request it cannot map safely. Code is a
// reason code; Detail a fixed phrase without request data.
type Refusal struct {
	Status int
	Code   string
	Detail string
	Err    error
	// Expression, when not "", is the FHIRPath of the part of the request
	// refused: "Bundle.entry[i]" for an entry of a batch or transaction.
	Expression string
	// Request, for a refusal about the target (TARGET_UNAVAILABLE,
	// TARGET_INVALID: the request was mapped and its user known, but the
	// target's attributes could not be learnt), is the request-phase
	// request refused. A door that decides records it as a DENY with
	// Code ([Refusal.Record]), so the refusal is on the audit chain.
	Request *Request
}

// Record has d decide and record ref's request as a DENY with ref's code
// (the engine's answer replaced whatever it is: [DenyFor]), when ref is
// about a target; it returns the DENY's decision id, "" when ref has no
// request or the decision could not be made (the refusal stands either
// way).
func (ref *Refusal) Record(ctx context.Context, d Decider) string {
	if ref.Request == nil || d == nil {
		return ""
	}
	resp, err := d.Decide(ctx, ref.Request.Check, DenyFor(ref.Code, ref.Detail))
	if err != nil {
		return ""
	}
	return resp.GetDecisionId()
}

// DenyFor is an amendment (Decider.Decide's amend) that replaces any
// answer by a DENY with one reason, code, keeping its decision id.
func DenyFor(code, message string) func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
	return func(resp *chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
		return &chaperonev1.CheckResponse{
			Decision:       chaperonev1.Decision_DECISION_DENY,
			DecisionId:     resp.GetDecisionId(),
			Reasons:        []*chaperonev1.Reason{{Code: code, Message: message}},
			BundleRevision: resp.GetBundleRevision(),
		}
	}
}

func (r *Refusal) Error() string {
	s := fmt.Sprintf("%d %s", r.Status, r.Code)
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

func (r *Refusal) Unwrap() error { return r.Err }

func unauthenticated(detail string, err error) *Refusal {
	return &Refusal{Status: http.StatusUnauthorized, Code: ReasonUnauthenticated, Detail: detail, Err: err}
}

func forbidden(code, detail string) *Refusal {
	return &Refusal{Status: http.StatusForbidden, Code: code, Detail: detail}
}

// Gateway maps gateway requests to CheckRequests. Close stops the key set
// refreshes.
type Gateway struct {
	cfg      *Config
	mapper   *fhirrest.Mapper
	keys     *callers.JWKS
	verifier *callers.JWTVerifier
	fetch    *fetcher // nil without attributes
	// purposeKey is the purpose of use header's name in canonical form
	// ("" for none): h[purposeKey] is h.Values(name) without
	// canonicalizing the name on every request.
	purposeKey string
}

// Options tune [New].
type Options struct {
	// JWKS tunes the key set (a test's HTTP client, for one).
	JWKS callers.JWKSConfig
	// Now is the clock of token checks and of the attributes cache; nil
	// means time.Now.
	Now func() time.Time
	// CacheTTL is how long fetched attributes are reused: the active
	// bundle's cacheTtl (serve passes the engine's). nil or 0 means they
	// are fetched for every request.
	CacheTTL func() time.Duration
	// FetchClient is the HTTP client that fetches attributes; nil means a
	// new http.Client. Redirects are never followed.
	FetchClient *http.Client
	// Revocations, when set, refuses (401) end-user tokens on the token
	// revocation list, checked on every request, cached tokens too.
	Revocations callers.RevocationList
	// RequireJTI refuses (401) end-user tokens without a jti.
	RequireJTI bool
}

// New loads the key set of cfg and returns the gateway.
func New(ctx context.Context, cfg *Config, o Options) (*Gateway, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	m, err := fhirrest.New(cfg.FHIRBase, fhirrest.WithChains(cfg.ChainedParameters))
	if err != nil {
		return nil, err
	}
	life, _ := cfg.maxLifetime()
	keys, err := callers.NewJWKS(ctx, cfg.Tokens.JWKS, o.JWKS)
	if err != nil {
		return nil, fmt.Errorf("gateway tokens: %w", err)
	}
	jcfg := callers.JWTConfig{
		Issuer: cfg.Tokens.Issuer, Audience: []string{cfg.Tokens.Audience},
		Algorithms: cfg.algorithms(), MaxLifetime: life, Now: o.Now, KeepClaims: true,
		Revocations: o.Revocations, RequireJTI: o.RequireJTI,
	}
	if in := cfg.Tokens.Introspection; in != nil {
		if jcfg.Introspection, err = newIntrospector(in, o.Now); err != nil {
			_ = keys.Close(ctx)
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	v, err := callers.NewJWTVerifier(keys, jcfg)
	if err != nil {
		_ = keys.Close(ctx)
		return nil, fmt.Errorf("gateway tokens: %w", err)
	}
	g := &Gateway{cfg: cfg, mapper: m, keys: keys, verifier: v}
	if name := cfg.PurposeOfUse.Header; name != "" {
		g.purposeKey = http.CanonicalHeaderKey(name)
	}
	if cfg.Attributes != nil {
		g.fetch = newFetcher(cfg, o)
	}
	return g, nil
}

// newIntrospector reads the client secret and builds the introspector of
// the end users' tokens.
func newIntrospector(in *IntrospectionConfig, now func() time.Time) (*callers.Introspector, error) {
	b, err := os.ReadFile(in.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("tokens.introspection.clientSecretFile: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return nil, fmt.Errorf("tokens.introspection.clientSecretFile %s is empty", in.ClientSecretFile)
	}
	ttl, _ := in.cache()
	return callers.NewIntrospector(callers.IntrospectionConfig{URL: in.URL, ClientID: in.ClientID, ClientSecret: secret, CacheTTL: ttl, Now: now})
}

// Close stops the key set refreshes.
func (g *Gateway) Close(ctx context.Context) error { return g.keys.Close(ctx) }

// Config is the gateway's configuration.
func (g *Gateway) Config() *Config { return g.cfg }

// Request is a gateway request mapped to a CheckRequest.
type Request struct {
	Check  *chaperonev1.CheckRequest
	Mapped fhirrest.Mapped
	// InBatch is set for an entry of a batch or transaction Bundle
	// ([Gateway.MapAll]); Entry is then its index in Bundle.entry.
	InBatch bool
	Entry   int
	// Resolved is set when the door fetched the target's attributes from
	// the FHIR server (attributes.fhirServer): Check is then a
	// resource-phase request with the target's patient, organization,
	// labels, categories and codes, decided fully at the door.
	Resolved bool
}

// overrideHeaders are method override headers some servers honour, each
// with its name in canonical form (the key of an http.Header).
var overrideHeaders = []struct{ name, key string }{
	{"X-HTTP-Method-Override", http.CanonicalHeaderKey("X-HTTP-Method-Override")},
	{"X-HTTP-Method", http.CanonicalHeaderKey("X-HTTP-Method")},
	{"X-Method-Override", http.CanonicalHeaderKey("X-Method-Override")},
}

// Map maps the request the gateway is about to forward (its method, its
// request URI as sent: path and query, and its headers, which carry the
// end user's token in Authorization) to a CheckRequest. Every error is a
// [*Refusal]: never an ALLOW for what cannot be mapped.
func (g *Gateway) Map(ctx context.Context, method, uri string, h http.Header) (*Request, error) {
	return g.MapBody(ctx, method, uri, h, nil)
}

// MapBody is [Gateway.Map] for a gateway that also sends the request's
// body (nil when it does not): a POST _search is mapped from its form
// body; without it, it is refused BODY_REQUIRED. A batch or transaction
// is refused BODY_REQUIRED without its body and BATCH with it (map it
// with [Gateway.MapAll]).
func (g *Gateway) MapBody(ctx context.Context, method, uri string, h http.Header, body []byte) (*Request, error) {
	rs, err := g.mapAll(ctx, method, uri, h, body, false)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// MapAll is [Gateway.MapBody] that also maps a batch or transaction (a
// POST of a Bundle to the base, with its body): one Request per entry, in
// order, each with InBatch set, every one a request-phase CheckRequest of
// the same subject and purpose. One entry that cannot be mapped refuses
// the whole request, naming the entry. Any other request is one Request.
func (g *Gateway) MapAll(ctx context.Context, method, uri string, h http.Header, body []byte) ([]*Request, error) {
	return g.mapAll(ctx, method, uri, h, body, true)
}

func (g *Gateway) mapAll(ctx context.Context, method, uri string, h http.Header, body []byte, batches bool) ([]*Request, error) {
	// Header names below are canonical: h[key] is h.Values(key).
	raw, ok := bearer(h["Authorization"])
	if !ok {
		return nil, unauthenticated(callers.ReasonMissingToken, nil)
	}
	claims, err := g.verifier.Verify(ctx, raw)
	if err != nil {
		var te *callers.TokenError
		if errors.As(err, &te) {
			return nil, unauthenticated(te.Reason, err)
		}
		return nil, unauthenticated(callers.ReasonMalformed, err)
	}
	subject, err := g.subject(claims)
	if err != nil {
		return nil, err
	}
	for _, o := range overrideHeaders {
		if len(h[o.key]) > 0 {
			return nil, forbidden(ReasonMethodOverride, o.name+" is not accepted")
		}
	}
	if len(h["If-None-Exist"]) > 0 {
		return nil, forbidden(string(fhirrest.ReasonConditional), "If-None-Exist is not accepted")
	}
	path, query, _ := strings.Cut(uri, "?")
	m, err := g.mapper.Map(method, path, query, body)
	ms, batch := []fhirrest.Mapped{m}, false
	if errors.Is(err, fhirrest.ErrBatch) && (batches || len(body) == 0) {
		// Without its body MapAll refuses it BODY_REQUIRED.
		ms, err = g.mapper.MapAll(method, path, query, body)
		batch = true
	}
	if err != nil {
		var re *fhirrest.RefusedError
		if errors.As(err, &re) {
			ref := forbidden(string(re.Reason), "the request cannot be mapped safely")
			var ee *fhirrest.EntryError
			if errors.As(err, &ee) {
				ref.Expression = entryExpression(ee.Index)
			}
			return nil, ref
		}
		return nil, forbidden(string(fhirrest.ReasonBadPath), "the request cannot be mapped safely")
	}
	purpose := g.cfg.PurposeOfUse.Default
	if g.purposeKey != "" {
		switch vs := h[g.purposeKey]; len(vs) {
		case 0:
		case 1:
			purpose = strings.TrimSpace(vs[0])
		default:
			return nil, forbidden(ReasonPurposeRequired, "one purpose of use header expected")
		}
	}
	if purpose == "" {
		return nil, forbidden(ReasonPurposeRequired, "no purpose of use")
	}
	out := make([]*Request, 0, len(ms))
	for i, m := range ms {
		typ := m.Type
		if m.Capabilities {
			typ = "CapabilityStatement"
		}
		if typ == "" {
			if batch {
				ref := forbidden(ReasonTypeRequired, fmt.Sprintf("entry %d: the door decides requests of one resource type", i))
				ref.Expression = entryExpression(i)
				return nil, ref
			}
			return nil, forbidden(ReasonTypeRequired, "the door decides requests of one resource type")
		}
		s := subject
		if i > 0 {
			s = proto.CloneOf(subject)
		}
		req := &chaperonev1.CheckRequest{
			Subject:      s,
			Action:       string(m.Action),
			Resource:     &chaperonev1.Resource{Type: typ, Id: m.ID, Patient: m.Patient},
			PurposeOfUse: purpose,
			// The door sees the URL and the token, not the data.
			Context: &chaperonev1.Context{Phase: PhaseRequest},
		}
		r := &Request{Check: req, Mapped: m, InBatch: batch, Entry: i}
		if g.fetch != nil && byID(m) {
			if err := g.resolve(ctx, r); err != nil {
				var ref *Refusal
				if batch && errors.As(err, &ref) {
					ref.Expression = entryExpression(i)
				}
				return nil, err
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// resolve fetches the target of r from the FHIR server and makes r a
// resource-phase request with its attributes. A target the server does not
// have (404, 410) leaves r a request-phase request; any failure is a
// refusal (TARGET_UNAVAILABLE, TARGET_INVALID).
func (g *Gateway) resolve(ctx context.Context, r *Request) error {
	t, err := g.fetch.fetch(ctx, r.Mapped)
	if err != nil {
		var te *targetError
		code := ReasonTargetUnavailable
		if errors.As(err, &te) {
			code = te.Code
		}
		return &Refusal{Status: http.StatusForbidden, Code: code, Detail: "the target's attributes could not be read", Err: err, Request: r}
	}
	if !t.Found {
		return nil
	}
	res := r.Check.Resource
	if res.Patient != "" && res.Patient != t.Patient {
		return &Refusal{Status: http.StatusForbidden, Code: ReasonTargetInvalid, Detail: "the target is not in the compartment of the path", Request: r}
	}
	res.Patient = t.Patient
	res.Organization = t.Organization
	res.SecurityLabels = t.SecurityLabels
	res.Categories = t.Categories
	res.Codes = t.Codes
	r.Check.Context.Phase = PhaseResource
	r.Resolved = true
	return nil
}

// entryExpression is the FHIRPath of entry i of a Bundle.
func entryExpression(i int) string { return fmt.Sprintf("Bundle.entry[%d]", i) }

// bearer is the token of the one Authorization header.
func bearer(vs []string) (string, bool) {
	const prefix = "bearer "
	if len(vs) != 1 {
		return "", false
	}
	v := vs[0]
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(prefix):])
	return tok, tok != ""
}

// kinds are the subject kinds implied by the type of the subject's id.
var kinds = map[string]string{
	"Practitioner":  "practitioner",
	"Patient":       "patient",
	"RelatedPerson": "related-person",
	"Device":        "device",
}

// subject reads the subject from the token's claims.
func (g *Gateway) subject(tc *callers.TokenClaims) (*chaperonev1.Subject, error) {
	n := g.cfg.Claims
	bad := func(claim, why string) error {
		return unauthenticated(callers.ReasonMissingClaim, fmt.Errorf("claim %q: %s", claim, why))
	}
	str := func(claim string) (string, error) {
		if claim == "" {
			return "", nil
		}
		v, ok := tc.Claims[claim]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", bad(claim, "not a string")
		}
		return s, nil
	}
	words := func(claim string) ([]string, error) {
		if claim == "" {
			return nil, nil
		}
		switch v := tc.Claims[claim].(type) {
		case nil:
			return nil, nil
		case string:
			return strings.Fields(v), nil
		case []string:
			return v, nil
		case []any:
			out := make([]string, 0, len(v))
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					return nil, bad(claim, "not an array of strings")
				}
				out = append(out, s)
			}
			return out, nil
		default:
			return nil, bad(claim, "not a string or an array of strings")
		}
	}
	s := &chaperonev1.Subject{}
	var err error
	if s.Id, err = str(n.ID); err != nil {
		return nil, err
	}
	if s.Id == "" {
		return nil, bad(n.ID, "required")
	}
	// SMART's fhirUser may be the absolute URL of the resource on the
	// FHIR server the token is for.
	s.Id = strings.TrimPrefix(s.Id, strings.TrimSuffix(g.cfg.Tokens.Audience, "/")+"/")
	if s.Kind, err = str(n.Kind); err != nil {
		return nil, err
	}
	if s.Kind == "" {
		typ, _, _ := strings.Cut(s.Id, "/")
		s.Kind = kinds[typ]
	}
	if s.Roles, err = words(n.Roles); err != nil {
		return nil, err
	}
	if s.Scopes, err = words(n.Scopes); err != nil {
		return nil, err
	}
	if s.Organization, err = str(n.Organization); err != nil {
		return nil, err
	}
	if s.ClientId, err = str(n.ClientID); err != nil {
		return nil, err
	}
	if s.ClientId == "" {
		s.ClientId = tc.ClientID
	}
	if s.LaunchPatient, err = str(n.LaunchPatient); err != nil {
		return nil, err
	}
	// SMART's patient launch context is a bare id.
	if p := s.LaunchPatient; p != "" && !strings.Contains(p, "/") {
		s.LaunchPatient = "Patient/" + p
	}
	return s, nil
}

// needsResourcePhase says whether an ALLOW of m must be completed in the
// resource phase: everything but the capability statement, since the door
// has not seen the target's organization and labels.
func needsResourcePhase(m fhirrest.Mapped) bool {
	return !m.Capabilities || m.PerEntryCheck
}
