package load

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/fhirrest"
	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Gateway is what the gateway doors (ProtocolExtAuthz, ProtocolForward)
// need to ask as a gateway does: the server's gateway file, which says
// where the FHIR API is, which claims carry the subject and which header
// the purpose of use, and the private key whose public half is in the
// file's key set, to sign the end users' tokens.
//
// Each CheckRequest is sent as the FHIR REST request it is the
// request-phase decision of, with a token whose claims the door reads
// back into the request's subject, so that the door decides exactly the
// CheckRequest a Check of the same run sends: the request must be what a
// gateway door can carry (see [Gateway.HTTP]).
type Gateway struct {
	cfg    *gateway.Config
	mapper *fhirrest.Mapper
	key    jwk.Key
	alg    jwa.SignatureAlgorithm
}

// NewGateway returns the Gateway of cfg signing with key (a private JWK
// with its key id set).
func NewGateway(cfg *gateway.Config, key jwk.Key) (*Gateway, error) {
	m, err := fhirrest.New(cfg.FHIRBase)
	if err != nil {
		return nil, fmt.Errorf("gateway fhirBase: %w", err)
	}
	if _, ok := key.KeyID(); !ok {
		return nil, errors.New("gateway key: no kid")
	}
	alg, err := signingAlgorithm(key)
	if err != nil {
		return nil, err
	}
	algs := cfg.Tokens.Algorithms
	if len(algs) == 0 {
		algs = gateway.Algorithms()
	}
	if !slices.Contains(algs, alg.String()) {
		return nil, fmt.Errorf("gateway key: %s is not among the gateway's algorithms %v", alg, algs)
	}
	return &Gateway{cfg: cfg, mapper: m, key: key, alg: alg}, nil
}

// LoadGateway reads the gateway file and the private key file (one JWK in
// JSON) of [WriteGatewayFiles].
func LoadGateway(gatewayFile, keyFile string) (*Gateway, error) {
	cfg, err := gateway.Load(gatewayFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("gateway key: %w", err)
	}
	key, err := jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("gateway key %s: %w", keyFile, err)
	}
	return NewGateway(cfg, key)
}

func signingAlgorithm(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	switch key.KeyType() {
	case jwa.OKP():
		return jwa.EdDSA(), nil
	case jwa.EC():
		return jwa.ES256(), nil
	case jwa.RSA():
		return jwa.RS256(), nil
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("gateway key: key type %s cannot sign end-user tokens", key.KeyType())
}

// Names of the files [WriteGatewayFiles] writes.
const (
	GatewayFileName = "gateway.yaml"
	GatewayKeyName  = "end-user-key.json"
	GatewayJWKSName = "end-user-keys.json"
)

// The issuer and audience of the end-user tokens of the files
// [WriteGatewayFiles] writes.
const (
	BenchIssuer   = "https://auth.bench.invalid"
	BenchAudience = "https://fhir.bench.invalid"
)

// benchGatewayFile is the gateway file of WriteGatewayFiles: every subject
// field has a claim.
const benchGatewayFile = `# Written by chaperone bench --write-gateway: serve --gateway this file,
# bench --gateway this file --gateway-key ` + GatewayKeyName + `.
fhirBase: /fhir
tokens:
  jwks: ` + GatewayJWKSName + `
  issuer: ` + BenchIssuer + `
  audience: ` + BenchAudience + `
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
resourcePhase: proxy
`

// WriteGatewayFiles writes into dir a new Ed25519 key that signs end-user
// tokens (GatewayKeyName, a private JWK: keep it to the benchmark), its
// public key set (GatewayJWKSName) and a gateway file naming it
// (GatewayFileName), for `serve --gateway` and `bench --gateway
// --gateway-key`. It returns the paths of the gateway file and the key.
func WriteGatewayFiles(dir string) (gatewayFile, keyFile string, err error) {
	_, raw, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		return "", "", err
	}
	if err := priv.Set(jwk.KeyIDKey, "bench-end-users"); err != nil {
		return "", "", err
	}
	if err := priv.Set(jwk.AlgorithmKey, jwa.EdDSA()); err != nil {
		return "", "", err
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return "", "", err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return "", "", err
	}
	privJSON, err := json.Marshal(priv)
	if err != nil {
		return "", "", err
	}
	setJSON, err := json.Marshal(set)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	gatewayFile = filepath.Join(dir, GatewayFileName)
	keyFile = filepath.Join(dir, GatewayKeyName)
	for _, f := range []struct {
		path string
		b    []byte
		mode os.FileMode
	}{
		{keyFile, privJSON, 0o600},
		{filepath.Join(dir, GatewayJWKSName), setJSON, 0o644},
		{gatewayFile, []byte(benchGatewayFile), 0o644},
	} {
		if err := os.WriteFile(f.path, f.b, f.mode); err != nil {
			return "", "", err
		}
	}
	return gatewayFile, keyFile, nil
}

// HTTPRequest is a CheckRequest as the HTTP request a gateway asks about.
type HTTPRequest struct {
	Method string
	URI    string // path and query
	// Authorization is "Bearer <end-user token>".
	Authorization string
	// PurposeHeader is the gateway file's purpose of use header ("" when
	// it names none) and Purpose its value.
	PurposeHeader, Purpose string
}

// tokens signs one end-user token per distinct subject, valid from now
// for life.
type tokens struct {
	g    *Gateway
	now  time.Time
	life time.Duration
	by   map[string]string // deterministic subject bytes → "Bearer …"
}

func (g *Gateway) tokens(now time.Time, life time.Duration) (*tokens, error) {
	maxLife := 24 * time.Hour
	if s := g.cfg.Tokens.MaxLifetime; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("gateway tokens.maxLifetime: %w", err)
		}
		maxLife = d
	}
	if life > maxLife {
		return nil, fmt.Errorf("the run needs end-user tokens valid for %s, the gateway accepts at most %s (tokens.maxLifetime)", life, maxLife)
	}
	return &tokens{g: g, now: now, life: life, by: map[string]string{}}, nil
}

// of returns the bearer token of subject s, signed on first use.
func (t *tokens) of(s *chaperonev1.Subject) (string, error) {
	k, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return "", err
	}
	if tok, ok := t.by[string(k)]; ok {
		return tok, nil
	}
	n := t.g.cfg.Claims
	b := jwt.NewBuilder().Subject(s.GetId()).Issuer(t.g.cfg.Tokens.Issuer).
		Audience([]string{t.g.cfg.Tokens.Audience}).IssuedAt(t.now).Expiration(t.now.Add(t.life)).
		Claim(n.ID, s.GetId())
	claim := func(field, name string, v any, empty bool) error {
		switch {
		case empty:
			return nil
		case name == "":
			return fmt.Errorf("subject.%s is set but the gateway file names no claim for it (claims.%s)", field, field)
		}
		b.Claim(name, v)
		return nil
	}
	launch := strings.TrimPrefix(s.GetLaunchPatient(), "Patient/")
	for _, c := range []struct {
		field, name string
		v           any
		empty       bool
	}{
		{"kind", n.Kind, s.GetKind(), s.GetKind() == "" || n.Kind == "" && kindOf(s.GetId()) == s.GetKind()},
		{"roles", n.Roles, strings.Join(s.GetRoles(), " "), len(s.GetRoles()) == 0},
		{"organization", n.Organization, s.GetOrganization(), s.GetOrganization() == ""},
		{"scopes", n.Scopes, strings.Join(s.GetScopes(), " "), len(s.GetScopes()) == 0},
		{"launchPatient", n.LaunchPatient, launch, launch == ""},
	} {
		if err := claim(c.field, c.name, c.v, c.empty); err != nil {
			return "", err
		}
	}
	if cid := s.GetClientId(); cid != "" {
		// Without a claim of its own the door reads client_id.
		name := n.ClientID
		if name == "" {
			name = "client_id"
		}
		b.Claim(name, cid)
	}
	tok, err := b.Build()
	if err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(t.g.alg, t.g.key))
	if err != nil {
		return "", fmt.Errorf("sign end-user token: %w", err)
	}
	bearer := "Bearer " + string(signed)
	t.by[string(k)] = bearer
	return bearer, nil
}

// kindOf is the kind the door gives a subject without a kind claim.
func kindOf(id string) string {
	typ, _, _ := strings.Cut(id, "/")
	switch typ {
	case "Practitioner":
		return "practitioner"
	case "Patient":
		return "patient"
	case "RelatedPerson":
		return "related-person"
	case "Device":
		return "device"
	}
	return ""
}

// errNotGatewayRequest is a CheckRequest no gateway door can carry.
var errNotGatewayRequest = errors.New("not a request-phase CheckRequest a gateway door can carry")

// uri is the FHIR REST request (method, path and query) whose
// request-phase decision r is, checked by mapping it back with fhirrest
// as the doors do: a request that does not map back to r's action,
// type, id and patient is an error.
func (g *Gateway) uri(r *chaperonev1.CheckRequest) (method, uri string, err error) {
	res := r.GetResource()
	base := strings.TrimSuffix(g.cfg.FHIRBase, "/")
	typ, id, patient := res.GetType(), res.GetId(), res.GetPatient()
	switch r.GetAction() {
	case "read":
		method, uri = "GET", base+"/"+typ+"/"+id
	case "search":
		method, uri = "GET", base+"/"+typ
		if pid, ok := strings.CutPrefix(patient, "Patient/"); ok {
			uri = base + "/Patient/" + pid + "/" + typ // the compartment search
		}
	case "create":
		method, uri = "POST", base+"/"+typ
	case "update":
		method, uri = "PUT", base+"/"+typ+"/"+id
	case "patch":
		method, uri = "PATCH", base+"/"+typ+"/"+id
	case "delete":
		method, uri = "DELETE", base+"/"+typ+"/"+id
	case "history":
		method, uri = "GET", base+"/"+typ+"/"+id+"/_history"
	default:
		return "", "", fmt.Errorf("%w: action %q", errNotGatewayRequest, r.GetAction())
	}
	m, err := g.mapper.Map(method, uri, "", nil)
	if err != nil {
		return "", "", fmt.Errorf("%w: %s %s: %w", errNotGatewayRequest, method, uri, err)
	}
	if string(m.Action) != r.GetAction() || m.Type != typ || m.ID != id || m.Patient != patient {
		return "", "", fmt.Errorf("%w: %s %s is %s %s/%s of patient %q", errNotGatewayRequest, method, uri, m.Action, m.Type, m.ID, m.Patient)
	}
	return method, uri, nil
}

// withID is h, a rendering of a request, for r: the same request with
// another resource id.
func (g *Gateway) withID(h HTTPRequest, r *chaperonev1.CheckRequest) (HTTPRequest, error) {
	var err error
	h.Method, h.URI, err = g.uri(r)
	return h, err
}

// http returns r as the request a gateway asks a door about, with a token
// of t. r must be what a door maps such a request to: subject (id, kind,
// roles, organization, scopes, clientId, launchPatient), action, resource
// type, id and patient as the FHIR REST request implies them, purpose of
// use, and context.phase "request", nothing else; else the error names
// what the door could not carry.
func (g *Gateway) http(t *tokens, r *chaperonev1.CheckRequest) (HTTPRequest, error) {
	s := r.GetSubject()
	carried := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{
			Id: s.GetId(), Kind: s.GetKind(), Roles: s.GetRoles(), Organization: s.GetOrganization(),
			Scopes: s.GetScopes(), ClientId: s.GetClientId(), LaunchPatient: s.GetLaunchPatient(),
		},
		Action:       r.GetAction(),
		Resource:     &chaperonev1.Resource{Type: r.GetResource().GetType(), Id: r.GetResource().GetId(), Patient: r.GetResource().GetPatient()},
		PurposeOfUse: r.GetPurposeOfUse(),
		Context:      &chaperonev1.Context{Phase: gateway.PhaseRequest},
	}
	if !proto.Equal(carried, r) {
		return HTTPRequest{}, fmt.Errorf("%w: it carries more than the subject, action, resource type, id and patient, purpose of use and context.phase %q (the built-in scenario gateway is one that fits)",
			errNotGatewayRequest, gateway.PhaseRequest)
	}
	if launch := s.GetLaunchPatient(); launch != "" && !strings.HasPrefix(launch, "Patient/") {
		return HTTPRequest{}, fmt.Errorf("%w: subject.launchPatient %q", errNotGatewayRequest, launch)
	}
	method, uri, err := g.uri(r)
	if err != nil {
		return HTTPRequest{}, err
	}
	tok, err := t.of(s)
	if err != nil {
		return HTTPRequest{}, err
	}
	h := g.cfg.PurposeOfUse.Header
	if h == "" && r.GetPurposeOfUse() != g.cfg.PurposeOfUse.Default {
		return HTTPRequest{}, fmt.Errorf("%w: purpose of use %q, and the gateway file names no purpose header", errNotGatewayRequest, r.GetPurposeOfUse())
	}
	return HTTPRequest{Method: method, URI: uri, Authorization: tok, PurposeHeader: h, Purpose: r.GetPurposeOfUse()}, nil
}
