package doors_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/extauthz"
	"github.com/chaperone-pdp/chaperone/gateway"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

const (
	issuerURL = "https://idp.doors.test"
	audience  = "https://fhir.doors.test"
	// generated is how many requests go through every door.
	generated = 200
)

// gatewayFile is the gateway file of the forward-auth and ext_authz doors.
const gatewayFile = `fhirBase: /fhir
tokens:
  jwks: JWKS
  issuer: ` + issuerURL + `
  audience: ` + audience + `
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

// user is an end user: the claims of the token and the subject the test
// expects them to map to.
type user struct {
	id, kind, org, client, launch string
	roles, scopes                 []string
}

// subject is the CheckRequest subject of u.
func (u user) subject() *chaperonev1.Subject {
	s := &chaperonev1.Subject{Id: u.id, Kind: u.kind, Roles: u.roles, Organization: u.org, Scopes: u.scopes, ClientId: u.client}
	if u.launch != "" {
		s.LaunchPatient = "Patient/" + u.launch
	}
	return s
}

// ask is one generated request: the end user, the FHIR REST request the
// gateway doors see, and the facts the test expects them to map to.
type ask struct {
	user        user
	purpose     string
	method, uri string
	action, typ string
	id, patient string
	// target, when not nil, is the resource the FHIR server holds for a
	// read or write by id: the gateway doors fetch it and decide in the
	// resource phase.
	target *target
}

// target is a resource on the FHIR server: its path and what it says.
type target struct {
	path                  string // under the base: Type/id or Type/id/_history/v
	patient, organization string // "Patient/51", "Organization/o1"; "" for none
	labels                []string
}

// json is the target's FHIR JSON.
func (t *target) json(typ, id string) string {
	r := map[string]any{"resourceType": typ, "id": id}
	meta := map[string]any{}
	if t.organization != "" {
		meta["tag"] = []map[string]string{{"system": tenantSystem, "code": strings.TrimPrefix(t.organization, "Organization/")}}
	}
	var sec []map[string]string
	for _, l := range t.labels {
		sec = append(sec, map[string]string{"system": actCode, "code": l})
	}
	if sec != nil {
		meta["security"] = sec
	}
	r["meta"] = meta
	if typ != "Patient" && t.patient != "" {
		r["subject"] = map[string]string{"reference": t.patient}
	}
	b, _ := json.Marshal(r)
	return string(b)
}

const (
	tenantSystem = "https://doors.test/tenant"
	actCode      = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// check is the request-phase CheckRequest of a, built by the test from the
// facts it generated (not from the doors' mapping).
func (a ask) check() *chaperonev1.CheckRequest {
	req := &chaperonev1.CheckRequest{
		Subject:      a.user.subject(),
		Action:       a.action,
		Resource:     &chaperonev1.Resource{Type: a.typ, Id: a.id, Patient: a.patient},
		PurposeOfUse: a.purpose,
		Context:      &chaperonev1.Context{Phase: "request"},
	}
	if t := a.target; t != nil {
		req.Context.Phase = "resource"
		req.Resource.Patient = t.patient
		req.Resource.Organization = t.organization
		for _, l := range t.labels {
			req.Resource.SecurityLabels = append(req.Resource.SecurityLabels, &chaperonev1.Coding{System: actCode, Code: l})
		}
	}
	return req
}

// withTarget gives a read or write by id a target on the FHIR server,
// with drawn attributes; about one in eight is not there (404), and is
// decided in the request phase.
func withTarget(r *rand.Rand, a *ask) {
	switch a.action {
	case "read", "vread", "update", "patch", "delete":
	default:
		return
	}
	if a.typ == "CapabilityStatement" || r.IntN(8) == 0 {
		return
	}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	t := &target{path: a.typ + "/" + a.id, patient: pick("Patient/51", "Patient/52", "Patient/51", ""),
		organization: pick("Organization/o1", "Organization/o1", "Organization/o2", "")}
	if a.action == "vread" {
		t.path += "/_history/2"
	}
	if a.typ == "Patient" {
		t.patient = "Patient/" + a.id
	}
	if r.IntN(4) == 0 {
		t.labels = []string{pick("ETH", "SUD", "HIV", "PSY", "R", "V", "N")}
	}
	a.target = t
}

// generate draws a request over the subjects, roles, purposes, types,
// actions, patients and organizations of the reference bundle.
func generate(r *rand.Rand) ask {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	users := []func() user{
		func() user {
			role := pick("clinician", "nurse", "care-coordinator", "pharmacist", "billing", "support", "developer", "analyst", "surgeon", "patient")
			id := "Practitioner/" + pick("p1", "n1", "b1", "s1")
			return user{id: id, kind: "practitioner", roles: []string{role}, org: pick("Organization/o1", "Organization/o1", "Organization/o2"),
				client: pick("", "", "clinician-app", "portal", "acme-analytics")}
		},
		func() user {
			return user{id: "Practitioner/p1", kind: "practitioner", roles: []string{"clinician", pick("nurse", "billing", "analyst")}, org: "Organization/o1"}
		},
		func() user {
			p := pick("51", "52")
			return user{id: "Patient/" + p, kind: "patient", roles: []string{"patient"}, launch: pick(p, p, "52", ""),
				scopes: []string{pick("patient/*.rs", "patient/Observation.rs", "patient/*.cruds", "user/*.rs", "launch/patient")}, client: pick("portal", "", "acme-analytics")}
		},
		func() user {
			return user{id: "RelatedPerson/rp1", kind: "related-person", roles: []string{"related-person"}, launch: pick("51", ""),
				scopes: []string{pick("patient/*.rs", "patient/Observation.rs")}, client: "portal"}
		},
	}
	a := ask{user: users[r.IntN(len(users))](), purpose: pick("TREAT", "TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT", "CAREMGT", "PUBHLTH")}
	a.typ = pick("Observation", "Observation", "Condition", "Encounter", "MedicationRequest", "DocumentReference", "Claim",
		"ExplanationOfBenefit", "Coverage", "Patient", "AllergyIntolerance", "Appointment")
	shape := r.IntN(11)
	if r.IntN(5) < 2 {
		// The everyday request, so that allows are drawn too: a member of
		// the care team of the own organization, or a patient in its own
		// compartment, reading or searching clinical data for treatment.
		if r.IntN(3) == 0 {
			p := pick("51", "52")
			a.user = user{id: "Patient/" + p, kind: "patient", roles: []string{"patient"}, launch: p, scopes: []string{"patient/*.rs"}, client: "portal"}
			a.purpose = "PATRQT"
		} else {
			a.user = user{id: "Practitioner/p1", kind: "practitioner", roles: []string{pick("clinician", "nurse", "care-coordinator")}, org: "Organization/o1", client: pick("", "clinician-app")}
			a.purpose = "TREAT"
		}
		a.typ = pick("Observation", "Condition", "Encounter", "MedicationRequest", "AllergyIntolerance")
		shape = r.IntN(6)
	}
	patient := pick("51", "52")
	id := pick("x1", "x2", "con-1")
	switch shape {
	case 0, 1, 2:
		a.action, a.id, a.method, a.uri = "read", id, "GET", "/fhir/"+a.typ+"/"+id
	case 3:
		a.action, a.id, a.method, a.uri = "vread", id, "GET", "/fhir/"+a.typ+"/"+id+"/_history/2"
	case 4:
		a.action, a.patient, a.method, a.uri = "search", "Patient/"+patient, "GET", "/fhir/"+a.typ+"?patient=Patient/"+patient
		if a.typ == "Patient" {
			a.uri = "/fhir/Patient?_id=" + patient
		}
	case 5:
		a.action, a.patient, a.method = "search", "Patient/"+patient, "GET"
		a.uri = "/fhir/Patient/" + patient + "/" + a.typ
		if a.typ == "Patient" {
			a.action, a.id, a.uri = "read", patient, "/fhir/Patient/"+patient
			a.patient = "Patient/" + patient
		}
	case 6:
		a.action, a.method, a.uri = "create", "POST", "/fhir/"+a.typ
	case 7:
		a.action, a.id, a.method, a.uri = pick("update", "patch", "delete"), id, "", "/fhir/"+a.typ+"/"+id
		a.method = map[string]string{"update": "PUT", "patch": "PATCH", "delete": "DELETE"}[a.action]
	case 8:
		a.action, a.id, a.method, a.uri = "history", id, "GET", "/fhir/"+a.typ+"/"+id+"/_history"
	case 9:
		a.action, a.typ, a.method, a.uri = "export", "Patient", "GET", "/fhir/Patient/$export"
	default:
		a.action, a.typ, a.method, a.uri = "read", "CapabilityStatement", "GET", "/fhir/metadata"
	}
	if a.typ == "Patient" && a.id != "" && a.patient == "" {
		a.patient = "Patient/" + a.id // a Patient read by id is in its own compartment
	}
	return a
}

// answer is what one door said about one request, and what it recorded.
type answer struct {
	allow      bool
	decisionID string
	codes      []string                 // reason codes the door answered with (every door on a deny, Check and AuthZEN on an allow)
	obl        *chaperonev1.Obligations // the obligations the door answered with
	record     testkit.Record
}

// TestOneDecisionFourDoors sends the same generated requests through the
// four doors of one server (one engine, one reference bundle, one audit
// recorder) and asserts that they decide them alike.
//
// What "the same" means. The gateway doors (ext_authz and forward-auth)
// see an HTTP request and an end user's token; they decide in the request
// phase (context.phase "request"), from what the URL and the token say.
// Check and AuthZEN are resource-phase doors by default, because their
// callers know the resource. Comparing a gateway's request-phase decision
// with a resource-phase decision of other facts would prove nothing, so
// Check and AuthZEN are sent the request-phase CheckRequest the test builds
// from the facts it generated (subject from the token's claims, action,
// type, id, compartment patient, purpose, phase "request"; AuthZEN with
// context.phase "request"), and the test asserts:
//
//   - each gateway door decided exactly that CheckRequest (its audit record
//     holds a request equal to the one the test built: the mapping is part
//     of what is compared, not assumed); so did Check and AuthZEN;
//   - every door's audit record holds the same decision, the same reasons
//     (code and policy id, in order) and the same obligations;
//   - every door's answer on the wire agrees with its record: allow or
//     deny, the reason codes of a deny (OperationOutcome, AuthZEN reasons,
//     CheckResponse reasons), the obligations of an allow (the
//     x-chaperone-obligations header, AuthZEN's obligations profile, the
//     CheckResponse), and the decision id;
//   - exactly one audit record per request per door, and no other records.
//
// The gateway doors also amend an ALLOW for the resource phase behind them
// (perEntryCheck, with resourcePhase proxy here), which Check and AuthZEN
// do not: the test holds that the reference bundle already flags every
// request-phase ALLOW, so the amendment changes nothing and the answers
// are equal; a bundle that did not would fail here, visibly.
func TestOneDecisionFourDoors(t *testing.T) {
	t.Parallel()
	fourDoors(t, false)
}

// TestOneDecisionFourDoorsResourcePhase is [TestOneDecisionFourDoors] with
// a gateway file that names a FHIR server (attributes.fhirServer): the
// gateway doors fetch the target of a read or write by id and decide it
// in the resource phase, so Check and AuthZEN are sent the resource-phase
// CheckRequest with the attributes the test put on the FHIR server
// (patient, owning organization as the tenant tag, meta.security). Targets
// the server does not have, and every other interaction, stay in the
// request phase.
func TestOneDecisionFourDoorsResourcePhase(t *testing.T) {
	t.Parallel()
	fourDoors(t, true)
}

func fourDoors(t *testing.T, attributes bool) {
	f := newFixture(t, attributes)
	r := rand.New(rand.NewPCG(17, 4))
	var allows, masked, resolved int
	reasons := map[string]bool{}
	for i := range generated {
		a := generate(r)
		if attributes {
			withTarget(r, &a)
			f.fhir.set(a)
			if a.target != nil {
				resolved++
			}
		}
		want := a.check()
		doors := map[string]answer{
			"Check":        f.viaCheck(t, want),
			"AuthZEN":      f.viaAuthZEN(t, want),
			"ext_authz":    f.viaExtAuthz(t, a),
			"forward-auth": f.viaForward(t, a),
		}
		base := doors["Check"]
		for name, got := range doors {
			rec := got.record
			if !proto.Equal(rec.Req, want) {
				t.Fatalf("request %d (%s %s): %s decided\n%v\nthe test built\n%v", i, a.method, a.uri, name, prototext.Format(rec.Req), prototext.Format(want))
			}
			if got.allow != (rec.Resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW) || got.decisionID != rec.Resp.GetDecisionId() {
				t.Fatalf("request %d: %s answered allow=%v id %q, recorded %v", i, name, got.allow, got.decisionID, rec.Resp)
			}
			if got.codes != nil && !slices.Equal(got.codes, codesOf(rec.Resp)) {
				t.Fatalf("request %d: %s answered reasons %v, recorded %v", i, name, got.codes, codesOf(rec.Resp))
			}
			if got.obl != nil && !proto.Equal(got.obl, orEmpty(rec.Resp.GetObligations())) {
				t.Fatalf("request %d: %s answered obligations %v, recorded %v", i, name, got.obl, rec.Resp.GetObligations())
			}
			if rec.Resp.GetDecision() != base.record.Resp.GetDecision() ||
				!sameReasons(rec.Resp.GetReasons(), base.record.Resp.GetReasons()) ||
				!proto.Equal(orEmpty(rec.Resp.GetObligations()), orEmpty(base.record.Resp.GetObligations())) {
				t.Fatalf("request %d (%s %s as %s, %s): %s decided\n%v\nCheck decided\n%v", i, a.method, a.uri, a.user.id, a.purpose,
					name, prototext.Format(rec.Resp), prototext.Format(base.record.Resp))
			}
		}
		if base.allow {
			allows++
			if o := base.record.Resp.GetObligations(); len(o.GetMaskPaths())+len(o.GetRedactLabels())+len(o.GetAuditTags()) > 0 {
				masked++
			}
		}
		for _, c := range codesOf(base.record.Resp) {
			reasons[c] = true
		}
	}
	// Exactly one record per request per door: the records found by
	// decision id above are all there are.
	if n := len(f.rec.All()); n != 4*generated {
		t.Fatalf("%d audit records for %d requests through four doors, want %d", n, generated, 4*generated)
	}
	// The generator must reach both answers and many reasons, or the
	// comparison is hollow.
	if attributes && resolved < generated/5 {
		t.Fatalf("only %d requests decided in the resource phase", resolved)
	}
	if allows < generated/10 || generated-allows < generated/10 || masked == 0 || len(reasons) < 8 {
		t.Fatalf("generator too narrow: %d allows of %d (%d with masks, labels or tags), reasons %v", allows, generated, masked, keys(reasons))
	}
	t.Logf("%d requests (%d in the resource phase), %d allowed (%d with masks, labels or tags), reasons %v", generated, resolved, allows, masked, keys(reasons))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func codesOf(resp *chaperonev1.CheckResponse) []string {
	out := []string{}
	for _, r := range resp.GetReasons() {
		out = append(out, r.GetCode())
	}
	return out
}

func sameReasons(a, b []*chaperonev1.Reason) bool {
	return slices.EqualFunc(a, b, func(x, y *chaperonev1.Reason) bool {
		return x.GetCode() == y.GetCode() && x.GetPolicyId() == y.GetPolicyId() && x.GetMessage() == y.GetMessage()
	})
}

func orEmpty(o *chaperonev1.Obligations) *chaperonev1.Obligations {
	if o == nil {
		return &chaperonev1.Obligations{}
	}
	return o
}

// fixture is one server with the four doors on a loopback port.
type fixture struct {
	addr   string
	rec    *testkit.Recorder
	priv   jwk.Key
	check  chaperonev1connect.DecisionServiceClient
	envoy  authv3.AuthorizationClient
	client *http.Client
	fhir   *fhirServer // with attributes
}

// fhirServer is a FHIR server on a loopback port holding the target of
// the request under way.
type fhirServer struct {
	url  string
	mu   sync.Mutex
	path string
	body string
}

// set makes a's target the one resource the server has.
func (s *fhirServer) set(a ask) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.path, s.body = "", ""
	if a.target != nil {
		s.path, s.body = "/base/"+a.target.path, a.target.json(a.typ, a.id)
	}
}

func newFHIRServer(t *testing.T) *fhirServer {
	t.Helper()
	s := &fhirServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		path, body := s.path, s.body
		s.mu.Unlock()
		if r.URL.Path != path || path == "" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/base"
	return s
}

func newFixture(t *testing.T, attributes bool) *fixture {
	t.Helper()
	f := &fixture{rec: &testkit.Recorder{}, client: &http.Client{Timeout: 10 * time.Second}}
	jwks := f.newKey(t)
	file := strings.Replace(gatewayFile, "JWKS", jwks, 1)
	if attributes {
		f.fhir = newFHIRServer(t)
		file += "tenantTagSystem: " + tenantSystem + "\nattributes:\n  fhirServer: " + f.fhir.url + "\n"
	}
	cfg, err := gateway.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	// The engine decides at a fixed time within office hours, so that a
	// rule of the hour cannot change between one door and the next.
	officeHours := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC) // 10:00 in New York, a Tuesday
	eng := engine.New(testkit.NoConsents{}, engine.WithClock(func() time.Time { return officeHours }))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(eng, v, server.WithRecorder(f.rec),
		server.WithDoor(func(s *server.Server) []server.Route {
			d := gateway.NewDoor(g, s, nil)
			routes := []server.Route{{Pattern: d.Pattern(), Procedure: gateway.ForwardProcedure, Handler: d, EndUserToken: true}}
			for _, r := range authzen.New(s).Routes() {
				routes = append(routes, server.Route{Pattern: r.Pattern, Procedure: r.Procedure, Handler: r.Handler, Batch: r.Batch})
			}
			return routes
		}),
		server.WithGRPCDoor(extauthz.Service, func(s *server.Server) func(...connect.HandlerOption) (string, http.Handler) {
			return extauthz.New(extauthz.FromGateway(g), s, nil).Handler
		}),
	).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	f.addr = ln.Addr().String()
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	f.envoy = authv3.NewAuthorizationClient(cc)
	f.check = chaperonev1connect.NewDecisionServiceClient(f.client, "http://"+f.addr, connect.WithProtoJSON())
	return f
}

// newKey makes the end users' signing key and returns its JWKS file.
func (f *fixture) newKey(t *testing.T) string {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if f.priv, err = jwk.Import(raw); err != nil {
		t.Fatal(err)
	}
	_ = f.priv.Set(jwk.KeyIDKey, "k1")
	_ = f.priv.Set(jwk.AlgorithmKey, jwa.ES256())
	pub, err := jwk.PublicKeyOf(f.priv)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// token is u's bearer token, its claims as a SMART authorization server
// would issue them.
func (f *fixture) token(t *testing.T, u user) string {
	t.Helper()
	now := time.Now()
	bld := jwt.NewBuilder().Subject("u").Issuer(issuerURL).Audience([]string{audience}).
		IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).
		Claim("fhirUser", u.id).Claim("kind", u.kind).Claim("roles", u.roles)
	if u.org != "" {
		bld = bld.Claim("org", u.org)
	}
	if len(u.scopes) > 0 {
		bld = bld.Claim("scope", strings.Join(u.scopes, " "))
	}
	if u.client != "" {
		bld = bld.Claim("client_id", u.client)
	}
	if u.launch != "" {
		bld = bld.Claim("patient", u.launch)
	}
	tok, err := bld.Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), f.priv))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + string(signed)
}

// recordOf is the one record of decision id.
func (f *fixture) recordOf(t *testing.T, door, id string) testkit.Record {
	t.Helper()
	var out []testkit.Record
	for _, r := range f.rec.All() {
		if r.Resp.GetDecisionId() == id {
			out = append(out, r)
		}
	}
	if id == "" || len(out) != 1 {
		t.Fatalf("%s: %d audit records of decision %q, want 1", door, len(out), id)
	}
	return out[0]
}

func (f *fixture) viaCheck(t *testing.T, req *chaperonev1.CheckRequest) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.check.Check(ctx, connect.NewRequest(proto.CloneOf(req)))
	if err != nil {
		t.Fatalf("Check %v: %v", req, err)
	}
	m := resp.Msg
	return answer{allow: m.GetDecision() == chaperonev1.Decision_DECISION_ALLOW, decisionID: m.GetDecisionId(),
		codes: codesOf(m), obl: orEmpty(m.GetObligations()), record: f.recordOf(t, "Check", m.GetDecisionId())}
}

// viaAuthZEN asks the AuthZEN door the same request-phase question.
func (f *fixture) viaAuthZEN(t *testing.T, req *chaperonev1.CheckRequest) answer {
	t.Helper()
	s, res := req.GetSubject(), req.GetResource()
	sp := map[string]any{"roles": s.GetRoles(), "scopes": s.GetScopes()}
	for k, v := range map[string]string{"organization": s.GetOrganization(), "clientId": s.GetClientId(), "launchPatient": s.GetLaunchPatient()} {
		if v != "" {
			sp[k] = v
		}
	}
	rp := map[string]any{}
	if res.GetPatient() != "" {
		rp["patient"] = res.GetPatient()
	}
	if res.GetOrganization() != "" {
		rp["organization"] = res.GetOrganization()
	}
	if ls := res.GetSecurityLabels(); len(ls) > 0 {
		var out []map[string]string
		for _, l := range ls {
			out = append(out, map[string]string{"system": l.GetSystem(), "code": l.GetCode()})
		}
		rp["securityLabels"] = out
	}
	body, err := json.Marshal(map[string]any{
		"subject":  map[string]any{"type": s.GetKind(), "id": s.GetId(), "properties": sp},
		"action":   map[string]any{"name": req.GetAction()},
		"resource": map[string]any{"type": res.GetType(), "id": res.GetId(), "properties": rp},
		"context":  map[string]any{"purposeOfUse": req.GetPurposeOfUse(), "phase": req.GetContext().GetPhase()},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.Post("http://"+f.addr+authzen.EvaluationPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("AuthZEN %s: %d %s", body, resp.StatusCode, raw)
	}
	var m struct {
		Decision bool `json:"decision"`
		Context  struct {
			DecisionID  string   `json:"decision_id"`
			Reasons     []string `json:"reasons"`
			Obligations []struct {
				Type       string `json:"type"`
				Properties struct {
					Paths  []string              `json:"paths"`
					Labels []*chaperonev1.Coding `json:"labels"`
					Tags   []string              `json:"tags"`
				} `json:"properties"`
			} `json:"obligations"`
		} `json:"context"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("AuthZEN answer %s: %v", raw, err)
	}
	obl := &chaperonev1.Obligations{}
	for _, o := range m.Context.Obligations {
		switch o.Type {
		case authzen.ObligationMask:
			obl.MaskPaths = o.Properties.Paths
		case authzen.ObligationRedactLabels:
			obl.RedactLabels = o.Properties.Labels
		case authzen.ObligationAuditTags:
			obl.AuditTags = o.Properties.Tags
		case authzen.ObligationPerEntryCheck:
			obl.PerEntryCheck = true
		default:
			t.Fatalf("AuthZEN obligation type %q", o.Type)
		}
	}
	codes := m.Context.Reasons
	if codes == nil {
		codes = []string{}
	}
	return answer{allow: m.Decision, decisionID: m.Context.DecisionID, codes: codes, obl: obl,
		record: f.recordOf(t, "AuthZEN", m.Context.DecisionID)}
}

// viaExtAuthz asks as Envoy would, over gRPC.
func (f *fixture) viaExtAuthz(t *testing.T, a ask) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := map[string]string{"authorization": f.token(t, a.user), "x-purpose-of-use": a.purpose}
	resp, err := f.envoy.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: a.method, Path: a.uri, Headers: h}},
	}})
	if err != nil {
		t.Fatalf("ext_authz %s %s: %v", a.method, a.uri, err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		var id, enc string
		for _, hv := range ok.GetHeaders() {
			switch hv.GetHeader().GetKey() {
			case extauthz.HeaderDecisionID:
				id = hv.GetHeader().GetValue()
			case extauthz.HeaderObligations:
				enc = hv.GetHeader().GetValue()
			}
		}
		return answer{allow: true, decisionID: id, obl: decodeObligations(t, enc), record: f.recordOf(t, "ext_authz", id)}
	}
	d := resp.GetDeniedResponse()
	var id string
	for _, hv := range d.GetHeaders() {
		if hv.GetHeader().GetKey() == extauthz.HeaderDecisionID {
			id = hv.GetHeader().GetValue()
		}
	}
	if d.GetStatus().GetCode() != 403 {
		t.Fatalf("ext_authz %s %s: HTTP %d %s", a.method, a.uri, d.GetStatus().GetCode(), d.GetBody())
	}
	return answer{decisionID: id, codes: outcomeCodes(t, []byte(d.GetBody())), record: f.recordOf(t, "ext_authz", id)}
}

// viaForward asks as nginx's auth_request would.
func (f *fixture) viaForward(t *testing.T, a ask) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+f.addr+gateway.ForwardPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Original-Method", a.method)
	req.Header.Set("X-Original-URI", a.uri)
	req.Header.Set("Authorization", f.token(t, a.user))
	req.Header.Set("X-Purpose-Of-Use", a.purpose)
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	id := resp.Header.Get(gateway.HeaderDecisionID)
	switch resp.StatusCode {
	case http.StatusOK:
		return answer{allow: true, decisionID: id, obl: decodeObligations(t, resp.Header.Get(gateway.HeaderObligations)), record: f.recordOf(t, "forward-auth", id)}
	case http.StatusForbidden:
		return answer{decisionID: id, codes: outcomeCodes(t, body), record: f.recordOf(t, "forward-auth", id)}
	}
	t.Fatalf("forward-auth %s %s: HTTP %d %s", a.method, a.uri, resp.StatusCode, body)
	return answer{}
}

func decodeObligations(t *testing.T, enc string) *chaperonev1.Obligations {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("obligations %q: %v", enc, err)
	}
	o := &chaperonev1.Obligations{}
	if err := protojson.Unmarshal(raw, o); err != nil {
		t.Fatalf("obligations %s: %v", raw, err)
	}
	return o
}

// outcomeCodes are the reason codes of an OperationOutcome, in order.
func outcomeCodes(t *testing.T, body []byte) []string {
	t.Helper()
	var o struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Details struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &o); err != nil || o.ResourceType != "OperationOutcome" {
		t.Fatalf("OperationOutcome %s: %v", body, err)
	}
	codes := []string{}
	for _, i := range o.Issue {
		for _, c := range i.Details.Coding {
			if c.System != gateway.ReasonSystem {
				t.Fatalf("reason system %q", c.System)
			}
			codes = append(codes, c.Code)
		}
	}
	return codes
}
