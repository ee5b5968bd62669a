package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Procedures whose grants open the pages (full names, as --callers grants
// them by service or method).
const (
	ProcCheck          = "/" + chaperonev1connect.DecisionServiceName + "/Check"
	ProcSearch         = "/" + chaperonev1connect.AuditServiceName + "/Search"
	ProcGetRecord      = "/" + chaperonev1connect.AuditServiceName + "/GetRecord"
	ProcVerify         = "/" + chaperonev1connect.AuditServiceName + "/Verify"
	ProcListBreakGlass = "/" + chaperonev1connect.AuditServiceName + "/ListBreakGlass"
	ProcReview         = "/" + chaperonev1connect.AuditServiceName + "/Review"
	ProcDisclosures    = "/" + chaperonev1connect.AuditServiceName + "/Disclosures"
	ProcConsentList    = "/" + chaperonev1connect.ConsentServiceName + "/List"
	ProcGrantList      = "/" + chaperonev1connect.AccessServiceName + "/ListBreakGlass"
	ProcRelationships  = "/" + chaperonev1connect.RelationshipServiceName + "/List"
	ProcBundleStatus   = "/" + chaperonev1connect.BundleServiceName + "/Status"
)

// Decider decides a request as DecisionService/Check does, recorded as the
// caller's decision, and explains it; *server.Server is one.
type Decider interface {
	Explain(ctx context.Context, req *chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, *engine.Trace, error)
}

// ConsentLister lists a patient's consents; *server.ConsentService is one.
type ConsentLister interface {
	List(ctx context.Context, req *connect.Request[chaperonev1.ConsentServiceListRequest]) (*connect.Response[chaperonev1.ConsentServiceListResponse], error)
}

// GrantLister lists break-glass grants; *server.AccessService is one.
type GrantLister interface {
	ListBreakGlass(ctx context.Context, req *connect.Request[chaperonev1.AccessServiceListBreakGlassRequest]) (*connect.Response[chaperonev1.AccessServiceListBreakGlassResponse], error)
}

// BundleSource reports the active bundle and hands out its files;
// *bundles.Loader is one.
type BundleSource interface {
	Status() bundles.Status
	Archive() *bundles.Archive
}

// RelationshipLister lists a patient's treating relationships;
// *server.RelationshipService is one.
type RelationshipLister interface {
	List(ctx context.Context, req *connect.Request[chaperonev1.RelationshipServiceListRequest]) (*connect.Response[chaperonev1.RelationshipServiceListResponse], error)
}

var (
	_ RelationshipLister = (*server.RelationshipService)(nil)
	_ Decider            = (*server.Server)(nil)
	_ ConsentLister      = (*server.ConsentService)(nil)
	_ GrantLister        = (*server.AccessService)(nil)
	_ BundleSource       = (*bundles.Loader)(nil)
)

// Config is what the console shows and acts through. Decider, Audit,
// Bundles and Validator are required; a nil Consents, Grants or
// Relationships leaves that
// part of the patient view out, saying so.
type Config struct {
	Decider  Decider
	Audit    chaperonev1connect.AuditServiceHandler
	Consents ConsentLister
	Grants   GrantLister
	// Relationships, when set, lists a patient's treating relationships.
	Relationships RelationshipLister
	Bundles       BundleSource
	Validator     *validation.Validator
	// Engine returns a new engine that decides with b over the server's
	// own consent, grant and agreement stores: for draft policies and
	// suites, never activated on the serving engine.
	Engine func(b *engine.Bundle) *engine.Engine
	// Consents for the bundle diff's replays; nil replays without consents.
	DiffConsents engine.ConsentEvaluator
	Logger       *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console is the web console, an http.Handler for the paths under [Prefix].
type Console struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template
	csrf  *csrf
	log   *slog.Logger
	now   func() time.Time

	verifyMu   sync.Mutex
	verified   *chaperonev1.AuditServiceVerifyResponse // the last chain verification
	verifiedAt time.Time
}

// New returns the console for cfg.
func New(cfg Config) (*Console, error) {
	if cfg.Decider == nil || cfg.Audit == nil || cfg.Bundles == nil || cfg.Validator == nil {
		return nil, errors.New("console: Decider, Audit, Bundles and Validator are required")
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, now: cfg.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	var err error
	if c.csrf, err = newCSRF(); err != nil {
		return nil, err
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"decisions", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET "+Prefix+"decisions", c.decisions)
	c.mux.HandleFunc("POST "+Prefix+"decisions", c.decisions)
	c.mux.HandleFunc("GET "+Prefix+"record", c.record)
	c.mux.HandleFunc("GET "+Prefix+"break-glass", c.breakGlass)
	c.mux.HandleFunc("POST "+Prefix+"break-glass/review", c.review)
	c.mux.HandleFunc("GET "+Prefix+"patient", c.patient)
	c.mux.HandleFunc("POST "+Prefix+"patient", c.patient)
	c.mux.HandleFunc("POST "+Prefix+"patient/disclosures.csv", c.disclosuresCSV)
	c.mux.HandleFunc("GET "+Prefix+"bundle", c.bundle)
	c.mux.HandleFunc("POST "+Prefix+"bundle/diff", c.bundleDiff)
	c.mux.HandleFunc("GET "+SignInPath, c.signIn)
	c.mux.HandleFunc("POST "+SignInPath, c.signIn)
	c.mux.HandleFunc("GET "+Prefix+"playground", c.playground)
	c.mux.HandleFunc("POST "+Prefix+"playground", c.playground)
	return c, nil
}

// maxFormBytes bounds a form; an uploaded bundle and its requests may be
// larger (maxUploadBytes).
const (
	maxFormBytes   = 1 << 20
	maxUploadBytes = 16 << 20
)

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages show patient identifiers: never cached, never framed, no
	// script or style but the console's own.
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if r.URL.Path == SignInPath {
		// Public: it shows nothing and keeps only what it is given.
		c.mux.ServeHTTP(w, r)
		return
	}
	caller, ok := server.CallerFromContext(r.Context())
	if !ok || caller == nil {
		c.fail(w, r, http.StatusUnauthorized, "Sign-in required: the console needs an authenticated caller.")
		return
	}
	if caller.Anonymous && !loopbackRemote(r.RemoteAddr) {
		// No caller authentication: the console answers this machine only.
		c.fail(w, r, http.StatusForbidden, "Without caller authentication the console answers loopback clients only.")
		return
	}
	if r.Method == http.MethodPost {
		limit := int64(maxFormBytes)
		if r.URL.Path == Prefix+"bundle/diff" {
			limit = maxUploadBytes
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if err := c.csrf.check(r, caller); err != nil {
			c.log.WarnContext(r.Context(), "console: write refused", "path", r.URL.Path, "caller", caller.ID, "error", err.Error())
			c.fail(w, r, http.StatusForbidden, "This form has expired or came from another site. Reload the page and try again.")
			return
		}
	}
	c.mux.ServeHTTP(w, r)
}

func loopbackRemote(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string
	Caller string
	CSRF   string
	Notice string
	Error  string
	Data   any
}

// navItems are the pages in the navigation bar.
var navItems = []struct{ Key, Path, Label string }{
	{"playground", "playground", "Playground"},
	{"decisions", "decisions", "Decisions"},
	{"break-glass", "break-glass", "Break-glass review"},
	{"patient", "patient", "Patient"},
	{"bundle", "bundle", "Bundle"},
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"nav":    func() any { return navItems },
		"prefix": func() string { return Prefix },
		"when":   formatTime,
		"join":   strings.Join,
		"lower":  strings.ToLower,
		"list":   func(xs ...string) []string { return xs },
		"counts": counts,
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, p := range []string{"decisions", "record", "breakglass", "patient", "bundle", "playground", "error", "signin"} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", p, err)
		}
		pages[p] = t
	}
	return pages, nil
}

// render writes page with v, filling in the caller and a CSRF token.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	if caller, ok := server.CallerFromContext(r.Context()); ok && caller != nil {
		v.Caller = server.CallerName(r.Context())
		v.CSRF = c.csrf.token(w, r, caller)
	}
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.log.ErrorContext(r.Context(), "console: render", "page", page, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.Copy(w, &buf)
}

// fail renders an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", view{Title: http.StatusText(status), Error: msg})
}

// allowed reports whether the caller may use every procedure.
func allowed(ctx context.Context, procs ...string) bool {
	for _, p := range procs {
		if server.Authorize(ctx, p) != nil {
			return false
		}
	}
	return true
}

// guard answers a page the caller may not see with 403 naming the grant it
// needs, and reports whether the page may go on.
func (c *Console) guard(w http.ResponseWriter, r *http.Request, page string, procs ...string) bool {
	for _, p := range procs {
		if err := server.Authorize(r.Context(), p); err != nil {
			status, msg := http.StatusForbidden, "This page needs a grant of "+strings.TrimPrefix(p, "/")+" (see --callers)."
			if errors.Is(err, callers.ErrUnauthenticated) {
				status, msg = http.StatusUnauthorized, "Sign-in required."
			}
			c.render(w, r, status, "error", view{Title: "Not allowed", Nav: page, Error: msg})
			return false
		}
	}
	return true
}

// rpcMessage is what a person is told of a failed call: the Connect
// message (which never carries internals), not the wrapped cause.
func rpcMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}

// counts words a diff's value counts: "clinician (3), nurse (1)".
func counts(cs []bundles.Count) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s (%d)", c.Value, c.Count)
	}
	return strings.Join(parts, ", ")
}

func formatTime(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return ""
		}
		return v.UTC().Format("2006-01-02 15:04:05Z")
	case interface{ AsTime() time.Time }:
		if v == nil {
			return ""
		}
		tt := v.AsTime()
		if tt.IsZero() || tt.Unix() == 0 {
			return ""
		}
		return tt.UTC().Format("2006-01-02 15:04:05Z")
	}
	return ""
}
