package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Decider decides CheckRequests at the PDP and never fails: an error is a
// DENY with a reason. *client.Client is one.
type Decider interface {
	Check(ctx context.Context, req *chaperonev1.CheckRequest) *chaperonev1.CheckResponse
	BatchCheck(ctx context.Context, reqs []*chaperonev1.CheckRequest) []*chaperonev1.CheckResponse
}

// Applier applies the obligations of a resource-phase ALLOW to one
// resource: out is the resource to release; withheld means release
// nothing. pep.Apply is one.
type Applier func(ob *chaperonev1.Obligations, resource []byte) (out []byte, withheld bool, err error)

// Response headers.
const (
	// HeaderDecisionID is the request-phase decision's id.
	HeaderDecisionID = gateway.HeaderDecisionID
	// HeaderDecisionIDs lists every decision the answer rests on, request
	// and resource phase, comma-separated.
	HeaderDecisionIDs = "X-Chaperone-Decision-Ids"
	// HeaderAuditTags lists the audit tags of the released resources.
	HeaderAuditTags = "X-Chaperone-Audit-Tags"
	// HeaderWithheld counts the resources left out of the answer.
	HeaderWithheld = "X-Chaperone-Withheld"
	// HeaderDecisions counts the decisions the answer rests on; the ids
	// header names the first MaxHeaderIDs of them (the audit log has them
	// all, under the request's correlation id).
	HeaderDecisions = "X-Chaperone-Decisions"
	// HeaderRequestID is the correlation id of every decision of the
	// request: the client's X-Request-Id when it is a plain token, else one
	// the proxy makes.
	HeaderRequestID = "X-Request-Id"
)

// MaxHeaderIDs bounds the decision ids listed in a response header, so a
// large page does not overflow a gateway's header buffers.
const MaxHeaderIDs = 64

// Reason codes of the proxy's own refusals.
const (
	ReasonUnsupported     = "UNSUPPORTED_INTERACTION"
	ReasonFormat          = "UNSUPPORTED_FORMAT"
	ReasonUpstream        = "UPSTREAM_ERROR"
	ReasonUnreadable      = "RESOURCE_UNREADABLE"
	ReasonWithheld        = "WITHHELD"
	ReasonTooLarge        = "TOO_LARGE"
	ReasonBodyMismatch    = "BODY_MISMATCH"
	ReasonVersionConflict = "VERSION_CONFLICT"
	ReasonDenied          = "DENY"
)

// PhaseResource is context.phase of the proxy's resource-phase decisions.
const PhaseResource = "resource"

// Defaults of [Options].
const (
	DefaultMaxRequestBytes  = 4 << 20
	DefaultMaxResponseBytes = 64 << 20
	DefaultTimeout          = 30 * time.Second
)

// Options configure a [Proxy]. Upstream, Gateway, Decider and Apply are
// required.
type Options struct {
	// Upstream is the FHIR base URL of the server behind the proxy
	// ("http://fhir.internal:8080/fhir").
	Upstream *url.URL
	// Gateway verifies end-user tokens and maps requests (the gateway
	// file: fhirBase, tokens, claims, purposeOfUse, tenantTagSystem).
	Gateway *gateway.Gateway
	Decider Decider
	Apply   Applier
	// PublicURL is the FHIR base clients use, for the links of the answers;
	// nil derives it from each request's Host and the gateway's fhirBase.
	PublicURL *url.URL
	// HTTPClient calls the upstream; nil means one with DefaultTimeout.
	HTTPClient       *http.Client
	MaxRequestBytes  int64
	MaxResponseBytes int64
	Logger           *slog.Logger
	// NetworkZone and DeviceTrust, when set, are put in the context of
	// every decision: what the proxy's deployment vouches for about where
	// its clients are (the reference bundle lets only managed devices
	// write). Clients cannot set them.
	NetworkZone string
	DeviceTrust string
}

// Proxy is the enforcement point in front of a FHIR server. It is an
// http.Handler, safe for concurrent use.
type Proxy struct {
	o        Options
	upstream string // Upstream without a trailing slash
	tenant   string
	base     string // the gateway's fhirBase, without a trailing slash
	log      *slog.Logger
}

// ErrOptions matches the errors of [New].
var ErrOptions = errors.New("proxy options")

// New returns the proxy.
func New(o Options) (*Proxy, error) {
	switch {
	case o.Upstream == nil || (o.Upstream.Scheme != "http" && o.Upstream.Scheme != "https") || o.Upstream.Host == "" || o.Upstream.RawQuery != "":
		return nil, fmt.Errorf("%w: the upstream is an http or https URL without query", ErrOptions)
	case o.Gateway == nil:
		return nil, fmt.Errorf("%w: a gateway is required", ErrOptions)
	case o.Decider == nil:
		return nil, fmt.Errorf("%w: a decider is required", ErrOptions)
	case o.Apply == nil:
		return nil, fmt.Errorf("%w: an applier is required", ErrOptions)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultTimeout, CheckRedirect: NoRedirects}
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.Gateway.Config()
	return &Proxy{
		o:        o,
		upstream: strings.TrimSuffix(o.Upstream.String(), "/"),
		tenant:   cfg.TenantTagSystem,
		base:     strings.TrimSuffix(cfg.FHIRBase, "/"),
		log:      o.Logger,
	}, nil
}

// NoRedirects is the CheckRedirect of an upstream client: a redirect is
// answered, not followed (it would read from elsewhere than the upstream).
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// exchange is one client request on its way through the proxy.
type exchange struct {
	p      *Proxy
	w      http.ResponseWriter
	r      *http.Request
	ctx    context.Context
	public string // the public FHIR base, without a trailing slash
	ids    []string
	tags   []string
	held   int
}

// idsHeader sets the decision ids headers.
func (x *exchange) idsHeader(h http.Header) {
	if len(x.ids) == 0 {
		return
	}
	ids := x.ids
	if len(ids) > MaxHeaderIDs {
		ids = ids[:MaxHeaderIDs]
	}
	h.Set(HeaderDecisionIDs, strings.Join(ids, ","))
	h.Set(HeaderDecisions, strconv.Itoa(len(x.ids)))
}

func (x *exchange) addIDs(resps ...*chaperonev1.CheckResponse) {
	for _, r := range resps {
		if id := r.GetDecisionId(); id != "" {
			x.ids = append(x.ids, id)
		}
	}
}

func (x *exchange) addTags(ob *chaperonev1.Obligations) {
	for _, t := range ob.GetAuditTags() {
		if !contains(x.tags, t) {
			x.tags = append(x.tags, t)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// refuse answers status with an OperationOutcome naming codes; the
// request never reached the upstream (or its answer is withheld).
func (x *exchange) refuse(status int, codes ...string) {
	h := x.w.Header()
	x.idsHeader(h)
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/fhir+json")
	x.w.WriteHeader(status)
	_, _ = x.w.Write(gateway.OperationOutcome(status, codes))
}

// deny answers a DENY decision: 403 naming its reasons.
func (x *exchange) deny(resps ...*chaperonev1.CheckResponse) {
	var codes []string
	for _, r := range resps {
		if r.GetDecision() == chaperonev1.Decision_DECISION_ALLOW {
			continue
		}
		if id := r.GetDecisionId(); id != "" && x.w.Header().Get(HeaderDecisionID) == "" {
			x.w.Header().Set(HeaderDecisionID, id)
		}
		for _, rs := range r.GetReasons() {
			if !contains(codes, rs.GetCode()) {
				codes = append(codes, rs.GetCode())
			}
		}
	}
	if len(codes) == 0 {
		codes = []string{ReasonDenied}
	}
	x.refuse(http.StatusForbidden, codes...)
}

// reply writes a released answer with the decision headers.
func (x *exchange) reply(status int, h http.Header, body []byte) {
	out := x.w.Header()
	for k, vs := range h {
		out[k] = vs
	}
	x.idsHeader(out)
	if len(x.tags) > 0 {
		out.Set(HeaderAuditTags, strings.Join(x.tags, ","))
	}
	if x.held > 0 {
		out.Set(HeaderWithheld, fmt.Sprint(x.held))
	}
	out.Set("Cache-Control", "no-store")
	if len(body) > 0 {
		out.Set("Content-Type", "application/fhir+json")
	}
	x.w.WriteHeader(status)
	if x.r.Method != http.MethodHead {
		_, _ = x.w.Write(body)
	}
}

// unsupported names the mapper's refusals the proxy reports as
// UNSUPPORTED_INTERACTION as well as by their own reason.
var unsupported = map[string]bool{
	"GRAPHQL": true, "REVERSE_CHAIN": true, "CHAINED_PARAMETER": true, "UNSAFE_INCLUDE": true,
	"UNKNOWN_INTERACTION": true, "METHOD_NOT_MAPPED": true, "PARAMETER_NOT_MAPPED": true, "CONDITIONAL": true,
	"TYPE_REQUIRED": true,
}

// ServeHTTP answers one FHIR request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{p: p, w: w, r: r, ctx: r.Context(), public: p.publicBase(r)}
	corr := r.Header.Get(HeaderRequestID)
	if !requestID.MatchString(corr) || len(r.Header.Values(HeaderRequestID)) > 1 {
		corr = uuid.NewString()
	}
	w.Header().Set(HeaderRequestID, corr)
	if !strings.HasPrefix(r.RequestURI, "/") {
		x.refuse(http.StatusBadRequest, "BAD_PATH")
		return
	}
	if code, ok := formatRefusal(r); !ok {
		x.refuse(http.StatusNotAcceptable, code)
		return
	}
	var body []byte
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		b, err := io.ReadAll(io.LimitReader(r.Body, p.o.MaxRequestBytes+1))
		if err != nil {
			x.refuse(http.StatusBadRequest, "BAD_BODY")
			return
		}
		if int64(len(b)) > p.o.MaxRequestBytes {
			x.refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge)
			return
		}
		body = b
	}
	if len(body) > 0 {
		if ok := bodyTypeOK(r); !ok {
			x.refuse(http.StatusUnsupportedMediaType, ReasonFormat)
			return
		}
	}
	reqs, err := p.o.Gateway.MapAll(x.ctx, r.Method, r.RequestURI, r.Header, body)
	if err != nil {
		var ref *gateway.Refusal
		if !errors.As(err, &ref) {
			ref = &gateway.Refusal{Status: http.StatusForbidden, Code: gateway.ReasonInvalidRequest}
		}
		codes := []string{ref.Code}
		if unsupported[ref.Code] {
			codes = []string{ReasonUnsupported, ref.Code}
		}
		x.refuse(ref.Status, codes...)
		return
	}
	for _, r := range reqs {
		p.vouch(r.Check)
		r.Check.Context.CorrelationId = corr
	}
	if reqs[0].InBatch {
		x.batch(reqs, body)
		return
	}
	req := reqs[0]
	_, query, _ := strings.Cut(r.RequestURI, "?")
	if r.Method == http.MethodPost && strings.HasSuffix(strings.SplitN(r.RequestURI, "?", 2)[0], "/_search") {
		query += "&" + string(body)
	}
	if code := p.refusal(req, r.Method, query); code != "" {
		x.refuse(http.StatusForbidden, ReasonUnsupported, code)
		return
	}
	resp := p.o.Decider.Check(x.ctx, req.Check)
	x.addIDs(resp)
	if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		x.deny(resp)
		return
	}
	w.Header().Set(HeaderDecisionID, resp.GetDecisionId())
	switch req.Mapped.Action {
	case fhir.Read, fhir.Vread:
		x.read(req)
	case fhir.Search, fhir.History, fhir.Operation:
		x.search(req, body)
	case fhir.Create, fhir.Update, fhir.Delete, fhir.Patch:
		x.write(req, body)
	default:
		x.refuse(http.StatusForbidden, ReasonUnsupported)
	}
}

// requestID is a client X-Request-Id used as the correlation id.
var requestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// vouch puts what the deployment vouches for in the request's context.
func (p *Proxy) vouch(req *chaperonev1.CheckRequest) {
	if req.Context == nil {
		req.Context = &chaperonev1.Context{}
	}
	if p.o.NetworkZone != "" {
		req.Context.NetworkZone = p.o.NetworkZone
	}
	if p.o.DeviceTrust != "" {
		req.Context.DeviceTrust = p.o.DeviceTrust
	}
}

// readOnlyOperations are the operations the proxy forwards as a POST: they
// change nothing, so deciding what they return suffices. Any other
// operation is forwarded as a GET only (an operation that changes state,
// $meta-delete for one, is not invoked by GET).
var readOnlyOperations = map[string]bool{"everything": true, "validate": true}

// refusal is the reason the proxy does not run a mapped request, "" when
// it does: system-level history, bulk export, operations by POST other
// than the read-only ones, and the parameters that
// change what a resource shows of itself (_elements, _summary other than
// false: the server could leave out meta.security or the patient
// reference a decision needs) or count what filtering would hide
// (_summary=count, _total=accurate).
func (p *Proxy) refusal(req *gateway.Request, method, query string) string {
	m := req.Mapped
	switch {
	case m.Action == fhir.History && m.Type == "":
		return "SYSTEM_HISTORY"
	case m.Action == fhir.Export:
		return "EXPORT"
	case m.Action == fhir.Operation && method != http.MethodGet && method != http.MethodHead && !readOnlyOperations[m.Operation]:
		return "OPERATION_POST"
	}
	vals, _ := url.ParseQuery(query)
	for name, vs := range vals {
		n, _, _ := strings.Cut(name, ":")
		switch strings.ToLower(n) {
		case "_elements", "_contained", "_containedtype":
			return "ELEMENTS"
		case "_summary":
			for _, v := range vs {
				if v != "false" {
					if v == "count" {
						return "SUMMARY_COUNT"
					}
					return "SUMMARY"
				}
			}
		case "_total":
			for _, v := range vs {
				if v != "none" && v != "estimate" {
					return "TOTAL_ACCURATE"
				}
			}
		case "_format":
			for _, v := range vs {
				if !jsonFormat(v) {
					return "FORMAT"
				}
			}
		}
	}
	return ""
}

func jsonFormat(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "json", "application/json", "application/fhir+json":
		return true
	}
	mt, _, err := mime.ParseMediaType(v)
	return err == nil && (mt == "application/json" || mt == "application/fhir+json")
}

// formatRefusal refuses a request that asks for XML (or anything but JSON)
// in _format or Accept: the proxy reads and releases JSON only.
func formatRefusal(r *http.Request) (string, bool) {
	for _, v := range r.URL.Query()["_format"] {
		if !jsonFormat(v) {
			return ReasonFormat, false
		}
	}
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return "", true
	}
	for _, a := range accept {
		for part := range strings.SplitSeq(a, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			switch mt {
			case "application/fhir+json", "application/json", "*/*", "application/*":
				return "", true
			}
		}
	}
	return ReasonFormat, false
}

func bodyTypeOK(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "application/fhir+json", "application/json", "application/json-patch+json":
		return true
	case "application/x-www-form-urlencoded":
		return r.Method == http.MethodPost
	}
	return false
}

// publicBase is the FHIR base the client uses.
func (p *Proxy) publicBase(r *http.Request) string {
	if p.o.PublicURL != nil {
		return strings.TrimSuffix(p.o.PublicURL.String(), "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + p.base
}

// upstreamURL is the upstream URL of a request URI under the base.
func (p *Proxy) upstreamURL(requestURI string) string {
	rel := strings.TrimPrefix(requestURI, p.base)
	if rel != "" && !strings.HasPrefix(rel, "/") && !strings.HasPrefix(rel, "?") {
		rel = "/" + rel
	}
	return p.upstream + rel
}

// rewrite turns an upstream URL into the proxy's; ok is false for a URL
// outside the upstream base.
func (x *exchange) rewrite(u string) (string, bool) {
	up := x.p.upstream
	if u == up || strings.HasPrefix(u, up+"/") || strings.HasPrefix(u, up+"?") {
		return x.public + u[len(up):], true
	}
	return "", false
}

// fetched is an upstream answer.
type fetched struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request upstream: JSON only, the end user's token not
// passed on.
func (x *exchange) call(method, requestURI string, body []byte, extra http.Header) (*fetched, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(x.ctx, method, x.p.upstreamURL(requestURI), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		ct := x.r.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/fhir+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	if id := x.w.Header().Get(HeaderRequestID); id != "" {
		req.Header.Set(HeaderRequestID, id)
	}
	resp, err := x.p.o.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, x.p.o.MaxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > x.p.o.MaxResponseBytes {
		return nil, errors.New("upstream answer too large")
	}
	if len(bytes.TrimSpace(b)) > 0 {
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt != "application/fhir+json" && mt != "application/json" {
			return nil, fmt.Errorf("upstream answered %q, not JSON", mt)
		}
	}
	return &fetched{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// upstreamFailed answers a failed upstream call.
func (x *exchange) upstreamFailed(err error) {
	x.p.log.ErrorContext(x.ctx, "upstream", slog.String("error", err.Error()))
	x.refuse(http.StatusBadGateway, ReasonUpstream)
}

// passError answers an upstream error status: its OperationOutcome when it
// is one, else an OperationOutcome of the status.
func (x *exchange) passError(f *fetched) {
	if obj, err := decodeObject(f.body); err == nil && obj["resourceType"] == "OperationOutcome" {
		x.reply(f.status, nil, plainOutcome(obj))
		return
	}
	if len(bytes.TrimSpace(f.body)) == 0 {
		x.reply(f.status, nil, nil)
		return
	}
	x.refuse(f.status, ReasonUpstream)
}

// plainOutcome is an upstream OperationOutcome reduced to the severity and
// code of its issues: its texts and locations may name what the user may
// not see.
func plainOutcome(obj map[string]any) []byte {
	var issues []any
	list, _ := obj["issue"].([]any)
	for _, i := range list {
		is, _ := i.(map[string]any)
		sev, _ := is["severity"].(string)
		code, _ := is["code"].(string)
		if sev == "" || code == "" {
			continue
		}
		issues = append(issues, map[string]any{"severity": sev, "code": code})
	}
	if len(issues) == 0 {
		issues = []any{map[string]any{"severity": "error", "code": "processing"}}
	}
	return marshal(map[string]any{"resourceType": "OperationOutcome", "issue": issues})
}

// copyHeaders are the upstream headers a released answer keeps.
var copyHeaders = []string{"ETag", "Last-Modified"}

func (x *exchange) keptHeaders(f *fetched) http.Header {
	h := http.Header{}
	for _, k := range copyHeaders {
		if v := f.header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	for _, k := range []string{"Location", "Content-Location"} {
		if v := f.header.Get(k); v != "" {
			if u, ok := x.rewriteLocation(v); ok {
				h.Set(k, u)
			}
		}
	}
	return h
}

// rewriteLocation rewrites an absolute upstream URL or a path under the
// upstream's path.
func (x *exchange) rewriteLocation(v string) (string, bool) {
	if u, ok := x.rewrite(v); ok {
		return u, true
	}
	up, err := url.Parse(x.p.upstream)
	if err != nil {
		return "", false
	}
	path := strings.TrimSuffix(up.Path, "/")
	if strings.HasPrefix(v, path+"/") {
		return x.public + v[len(path):], true
	}
	if !strings.HasPrefix(v, "/") && !strings.Contains(v, "://") {
		return x.public + "/" + v, true
	}
	return "", false
}

// decodeObject decodes a JSON object keeping numbers as written.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil || dec.More() {
		return nil, errors.New("not one JSON object")
	}
	return m, nil
}
