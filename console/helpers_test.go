package console_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/console"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/keyset"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

const (
	testIssuer   = "https://idp.console.test"
	testAudience = "chaperone"
)

// env is a real server (engine on the reference bundle, in-memory stores
// seeded with the reference fixtures, a durable file audit log, the
// guard) with the console mounted, on a loopback httptest server.
type env struct {
	url     string
	logPath string
	log     *audit.Log
	grants  *access.Memory
	key     *ecdsa.PrivateKey // token signing key when callers authenticate
	jwkKey  jwk.Key
}

type envOptions struct {
	// callers, when set, turns on bearer-token authentication with this
	// authorization file; otherwise the loopback anonymous mode.
	callers *callers.AuthzConfig
	// sealed seals the identifying fields of audit records (and gives the
	// audit service the key set).
	sealed bool
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{logPath: filepath.Join(dir, "audit.jsonl")}

	mem := consentstore.NewMemory(consentstore.WithMemoryLimits(consentstore.Limits{MaxClockSkew: -1}))
	if _, err := mem.Load(ctx, filepath.Join("..", "policies", "fixtures", "consents")); err != nil {
		t.Fatal(err)
	}
	e.grants = access.NewMemory()
	rels := consentstore.NewMemoryRelationships(nil)
	if _, err := rels.PutRelationship(ctx, consentstore.Relationship{Kind: consentstore.RelationshipCareTeam, Patient: "Patient/53",
		Practitioner: "Practitioner/p1", Organization: "Organization/o1", Source: "CareTeam/ct-53"}); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.StoreConsents(mem), engine.WithGrants(e.grants), engine.WithAgreements(e.grants), engine.WithRelationships(rels))
	loader := bundles.NewLoader(eng, bundles.DirSource("policies", os.DirFS(filepath.Join("..", "policies"))))
	if err := loader.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sink, err := audit.OpenFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	logOpts := []audit.Option{audit.WithDurable(true)}
	var svcOpts []server.AuditOption
	if o.sealed {
		ks, err := keyset.Generate("k1")
		if err != nil {
			t.Fatal(err)
		}
		fk, err := audit.NewFieldKeys(ks)
		if err != nil {
			t.Fatal(err)
		}
		logOpts = append(logOpts, audit.WithFieldKeys(fk))
		svcOpts = append(svcOpts, server.WithAuditFieldKeys(fk))
	}
	e.log = audit.New(sink, logOpts...)
	t.Cleanup(func() { _ = e.log.Close(context.Background()) })
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	path := e.logPath
	auditSvc := server.NewAuditService(func(context.Context) iter.Seq2[audit.Entry, error] { return audit.ReadFiles(path) }, e.log, svcOpts...)
	consentSvc := server.NewConsentService(mem)
	accessSvc := server.NewAccessService(e.grants)
	relSvc := server.NewRelationshipService(rels)

	gc := server.GuardConfig{LoopbackHosts: true, SelfAuthorized: []string{console.Prefix}}
	if o.callers != nil {
		gc = server.GuardConfig{SelfAuthorized: []string{console.Prefix}, Public: append(server.DefaultPublicPaths(), console.SignInPath)}
		gc.JWT = e.verifier(t, dir)
		if gc.Authorizer, err = callers.NewAuthorizer(*o.callers); err != nil {
			t.Fatal(err)
		}
	}
	g, err := server.NewGuard(gc)
	if err != nil {
		t.Fatal(err)
	}
	mw := []func(http.Handler) http.Handler{g.Middleware}
	if o.callers != nil {
		// Browsers sign in with a token, as serve --console --jwks does.
		mw = []func(http.Handler) http.Handler{console.BearerCookie, g.Middleware}
	}
	var con *console.Console
	srv := server.New(eng, v,
		server.WithRecorder(e.log),
		server.WithAuditService(auditSvc), server.WithConsentService(consentSvc), server.WithAccessService(accessSvc),
		server.WithBundleService(loader),
		server.WithMiddleware(mw...), server.WithHandlerOptions(g.HandlerOptions()...),
		server.WithHTTPHandler(console.Prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { con.ServeHTTP(w, r) })),
	)
	con, err = console.New(console.Config{
		Decider: srv, Audit: auditSvc, Consents: consentSvc, Grants: accessSvc, Relationships: relSvc, Bundles: loader, Validator: v,
		Engine: func(b *engine.Bundle) *engine.Engine {
			d := engine.New(engine.StoreConsents(mem), engine.WithGrants(e.grants), engine.WithAgreements(e.grants), engine.WithRelationships(rels))
			d.Activate(b)
			return d
		},
		DiffConsents: engine.StoreConsents(mem),
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	e.url = ts.URL
	return e
}

// verifier makes a token signing key, writes its key set to dir and
// returns a verifier trusting it.
func (e *env) verifier(t *testing.T, dir string) *callers.JWTVerifier {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, "k1")
	_ = priv.Set(jwk.AlgorithmKey, jwa.ES256())
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := callers.NewJWKS(context.Background(), file, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close(context.Background()) })
	v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}})
	if err != nil {
		t.Fatal(err)
	}
	e.jwkKey = priv
	return v
}

// token signs a bearer token for sub.
func (e *env) token(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewBuilder().Subject(sub).Issuer(testIssuer).Audience([]string{testAudience}).
		IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour)).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), e.jwkKey))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// browser is an HTTP client with a cookie jar that sends Origin on
// writes, as a browser does, and a bearer token when given one.
type browser struct {
	t      *testing.T
	base   string
	c      *http.Client
	bearer string
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: e.url, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(req *http.Request) (int, http.Header, string) {
	b.t.Helper()
	if b.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+b.bearer)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	code, _, body := b.do(req)
	return code, body
}

// post sends a form from the console's own origin.
func (b *browser) post(path string, form url.Values) (int, http.Header, string) {
	b.t.Helper()
	return b.postFrom(b.base, path, form)
}

func (b *browser) postFrom(origin, path string, form url.Values) (int, http.Header, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf loads page and returns its form token.
func (b *browser) csrf(page string) string {
	b.t.Helper()
	code, body := b.get(page)
	m := csrfRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		b.t.Fatalf("GET %s: %d, no csrf token", page, code)
	}
	return m[1]
}

// records reads the audit log back.
func (e *env) records(t *testing.T) []audit.Record {
	t.Helper()
	recs, err := audit.Records(audit.ReadFiles(e.logPath))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// upload posts a multipart form with files from the console's origin.
func (b *browser) upload(path, csrf string, files map[string][]byte) (int, string) {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("csrf", csrf)
	for field, data := range files {
		fw, err := mw.CreateFormFile(field, field+".bin")
		if err != nil {
			b.t.Fatal(err)
		}
		_, _ = fw.Write(data)
	}
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", b.base)
	code, _, body := b.do(req)
	return code, body
}

// candidateBundle builds the reference policies plus a rule forbidding
// every emergency access, as bundle build would (unsigned, tests skipped).
func candidateBundle(t *testing.T) []byte {
	t.Helper()
	files := fstest.MapFS{}
	src := os.DirFS(filepath.Join("..", "policies"))
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(src, p)
		files[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files["freeze.cedar"] = &fstest.MapFile{Data: []byte("@id(\"freeze-emergency-access\")\nforbid (principal, action, resource) when { context.purposeOfUse == \"ETREAT\" };\n")}
	a, err := bundles.ReadDir(files)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
