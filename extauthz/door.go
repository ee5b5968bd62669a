package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Names the guard authorizes the door by: a callers file grants it with
// the service name or the procedure.
const (
	Service        = "envoy.service.auth.v3.Authorization"
	CheckProcedure = "/" + Service + "/Check"
)

// Headers the door adds to an allowed request (and removes from what the
// client sent): gateway.HeaderDecisionID and gateway.HeaderObligations in
// the lower case HTTP/2 uses.
const (
	HeaderDecisionID  = "x-chaperone-decision-id"
	HeaderObligations = "x-chaperone-obligations"
)

// Reason codes of refusals the door makes itself.
const (
	// ReasonNoHTTP: the CheckRequest carries no attributes.request.http.
	ReasonNoHTTP = "HTTP_REQUEST_REQUIRED"
	// ReasonPartialBody: Envoy sent only the first part of the body.
	ReasonPartialBody = "PARTIAL_BODY"
	// ReasonInvalidRequest: the mapped CheckRequest breaks the API's rules.
	ReasonInvalidRequest = "INVALID_REQUEST"
	// ReasonDeny: a DENY that names no reason (never expected).
	ReasonDeny = "DENY"
)

// partialBodyHeader is set by Envoy when the body it sends is truncated.
// partialBodyKey is its canonical form, the key of an http.Header.
const (
	partialBodyHeader = "x-envoy-auth-partial-body"
	partialBodyKey    = "X-Envoy-Auth-Partial-Body"
)

// firstValue is the first of vs, "" for none (http.Header.Get).
func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// Request is the HTTP request Envoy asks about.
type Request struct {
	// Method is the HTTP method.
	Method string
	// URI is the request target as sent: path and query.
	URI string
	// Header holds the request's headers, authorization and the purpose
	// of use header among them.
	Header http.Header
	// Body is the request body when Envoy sends it (with_request_body),
	// else nil.
	Body []byte
	// SourcePrincipal is the workload that sent the request through Envoy
	// (attributes.source.principal, a SPIFFE id under mTLS), "" when
	// unknown.
	SourcePrincipal string
}

// Mapped is a request mapped to the CheckRequest to decide.
type Mapped struct {
	// Check is the request-phase CheckRequest.
	Check *chaperonev1.CheckRequest
	// Amend, when not nil, completes the engine's answer before it is
	// recorded (see [Decider]).
	Amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse
	// Entries, when not nil, make the request a batch or transaction:
	// Check is then nil and each entry is decided in order (one decision
	// and one audit record each). The request is allowed only when every
	// entry is; the first entry denied ends it, a DENY naming the entry
	// (Bundle.entry[i]) and its reasons.
	Entries []*Mapped
}

// Mapper maps the HTTP attributes of a request to a CheckRequest. An
// error that is a [*gateway.Refusal] is answered as a DENY with its status
// (401 or 403) and code; any other error means the request could not be
// mapped for a reason of the server's own, and the call fails UNAVAILABLE.
type Mapper interface {
	Map(ctx context.Context, r *Request) (*Mapped, error)
}

// MapperFunc is a function that is a [Mapper].
type MapperFunc func(ctx context.Context, r *Request) (*Mapped, error)

// Map calls f.
func (f MapperFunc) Map(ctx context.Context, r *Request) (*Mapped, error) { return f(ctx, r) }

// FromGateway is the Mapper of a gateway file ([gateway.Gateway]): the
// end user's token verified and read into the subject, the purpose of use
// header or default, the FHIR REST request mapped by fhirrest under the
// gateway's fhirBase (with its body when Envoy sends it), context.phase
// "request", and the gateway's amendment for the resource phase behind it
// (perEntryCheck, or NO_RESOURCE_ENFORCEMENT with resourcePhase none), as
// the forward-auth door decides.
func FromGateway(g *gateway.Gateway) Mapper {
	return MapperFunc(func(ctx context.Context, r *Request) (*Mapped, error) {
		reqs, err := g.MapAll(ctx, r.Method, r.URI, r.Header, r.Body)
		if err != nil {
			return nil, err
		}
		if len(reqs) == 1 && !reqs[0].InBatch {
			return &Mapped{Check: reqs[0].Check, Amend: g.Amend(reqs[0])}, nil
		}
		out := &Mapped{Entries: make([]*Mapped, len(reqs))}
		for i, req := range reqs {
			out.Entries[i] = &Mapped{Check: req.Check, Amend: g.Amend(req)}
		}
		return out, nil
	})
}

// Decider decides CheckRequests; *server.Server is one.
type Decider interface {
	// Decide validates, decides, audits and logs req as Check does; an
	// invalid req is a *validation.Error. amend may replace the answer
	// before it is recorded.
	Decide(ctx context.Context, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error)
}

// ErrUnavailable is the error of a Check that could not be answered with
// a decision: the rules could not run, or the Mapper failed.
var ErrUnavailable = errors.New("ext_authz: decision unavailable")

// Door is the ext_authz door.
type Door struct {
	mapper  Mapper
	decider Decider
	logger  *slog.Logger
}

// New returns the door mapping with m and deciding through d; logger (nil:
// none) logs failures inside the server.
func New(m Mapper, d Decider, logger *slog.Logger) *Door {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Door{mapper: m, decider: d, logger: logger}
}

// Handler is the door's gRPC handler and the path it is served at, in the
// shape of a generated Connect handler constructor (server.WithService).
// A Check that fails with [ErrUnavailable] is gRPC status 14.
func (d *Door) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	h := connect.NewUnaryHandler(CheckProcedure, func(ctx context.Context, req *connect.Request[authv3.CheckRequest]) (*connect.Response[authv3.CheckResponse], error) {
		resp, err := d.Check(ctx, req.Msg)
		if err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, ErrUnavailable)
		}
		return connect.NewResponse(resp), nil
	}, append(opts, connect.WithCodec(wireCodec{}))...)
	return CheckProcedure, h
}

// Check answers one ext_authz CheckRequest. A DENY is an answer, not an
// error; the error wraps [ErrUnavailable].
func (d *Door) Check(ctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	hr := in.GetAttributes().GetRequest().GetHttp()
	if hr == nil {
		return denied(http.StatusForbidden, "", []string{ReasonNoHTTP}), nil
	}
	r := &Request{
		Method:          hr.GetMethod(),
		URI:             hr.GetPath(),
		Header:          headers(hr),
		SourcePrincipal: in.GetAttributes().GetSource().GetPrincipal(),
	}
	switch {
	case len(hr.GetRawBody()) > 0:
		r.Body = hr.GetRawBody()
	case hr.GetBody() != "":
		r.Body = []byte(hr.GetBody())
	}
	if strings.EqualFold(firstValue(r.Header[partialBodyKey]), "true") {
		return denied(http.StatusForbidden, "", []string{ReasonPartialBody}), nil
	}
	m, err := d.mapper.Map(ctx, r)
	if err != nil {
		var ref *gateway.Refusal
		if errors.As(err, &ref) {
			status := ref.Status
			if status != http.StatusUnauthorized {
				status = http.StatusForbidden
			}
			id := ref.Record(ctx, d.decider) // a target refusal is recorded as a DENY
			return deniedBody(status, id, gateway.OperationOutcomeAt(status, []string{ref.Code}, ref.Expression)), nil
		}
		d.logger.LogAttrs(ctx, slog.LevelError, "ext_authz mapping failed", slog.String("error", err.Error()))
		return nil, fmt.Errorf("map: %w: %w", ErrUnavailable, err)
	}
	if m.Entries != nil {
		return d.checkEntries(ctx, m.Entries)
	}
	resp, no, err := d.decide(ctx, m)
	if no != nil || err != nil {
		return no, err
	}
	return allowed(resp.GetDecisionId(), resp.GetObligations())
}

// decide decides one mapped request: the engine's answer when it is an
// ALLOW, else the door's DENY.
func (d *Door) decide(ctx context.Context, m *Mapped) (*chaperonev1.CheckResponse, *authv3.CheckResponse, error) {
	resp, err := d.decider.Decide(ctx, m.Check, m.Amend)
	if err != nil {
		var verr *validation.Error
		if errors.As(err, &verr) {
			return nil, denied(http.StatusForbidden, "", []string{ReasonInvalidRequest}), nil
		}
		d.logger.LogAttrs(ctx, slog.LevelError, "ext_authz decision failed", slog.String("error", err.Error()))
		return nil, nil, fmt.Errorf("decide: %w: %w", ErrUnavailable, err)
	}
	if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		return nil, denied(http.StatusForbidden, resp.GetDecisionId(), reasonCodes(resp)), nil
	}
	return resp, nil, nil
}

func reasonCodes(resp *chaperonev1.CheckResponse) []string {
	codes := make([]string, 0, len(resp.GetReasons()))
	for _, rs := range resp.GetReasons() {
		codes = append(codes, rs.GetCode())
	}
	if len(codes) == 0 {
		codes = append(codes, ReasonDeny)
	}
	return codes
}

// checkEntries decides a batch or transaction entry by entry: allowed when
// every entry is, with the decision ids in entry order (comma-separated)
// and the union of the entries' obligations; else the DENY of the first
// entry denied, its OperationOutcome naming Bundle.entry[i].
func (d *Door) checkEntries(ctx context.Context, entries []*Mapped) (*authv3.CheckResponse, error) {
	ids := make([]string, 0, len(entries))
	all := &chaperonev1.Obligations{}
	for i, e := range entries {
		resp, err := d.decider.Decide(ctx, e.Check, e.Amend)
		if err != nil {
			var verr *validation.Error
			if errors.As(err, &verr) {
				return deniedEntry(http.StatusForbidden, "", i, []string{ReasonInvalidRequest}), nil
			}
			d.logger.LogAttrs(ctx, slog.LevelError, "ext_authz decision failed", slog.String("error", err.Error()), slog.Int("entry", i))
			return nil, fmt.Errorf("decide entry %d: %w: %w", i, ErrUnavailable, err)
		}
		if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
			return deniedEntry(http.StatusForbidden, resp.GetDecisionId(), i, reasonCodes(resp)), nil
		}
		ids = append(ids, resp.GetDecisionId())
		merge(all, resp.GetObligations())
	}
	return allowed(strings.Join(ids, ","), all)
}

// merge adds o's obligations to into: every mask, label and tag (each
// once), and perEntryCheck when either carries it.
func merge(into, o *chaperonev1.Obligations) {
	for _, p := range o.GetMaskPaths() {
		if !slices.Contains(into.MaskPaths, p) {
			into.MaskPaths = append(into.MaskPaths, p)
		}
	}
	for _, l := range o.GetRedactLabels() {
		if !slices.ContainsFunc(into.RedactLabels, func(x *chaperonev1.Coding) bool {
			return x.GetSystem() == l.GetSystem() && x.GetCode() == l.GetCode()
		}) {
			into.RedactLabels = append(into.RedactLabels, l)
		}
	}
	for _, t := range o.GetAuditTags() {
		if !slices.Contains(into.AuditTags, t) {
			into.AuditTags = append(into.AuditTags, t)
		}
	}
	into.PerEntryCheck = into.PerEntryCheck || o.GetPerEntryCheck()
}

// allowed is an ALLOW carrying the decision id and the obligations.
func allowed(decisionID string, obl *chaperonev1.Obligations) (*authv3.CheckResponse, error) {
	if obl == nil {
		obl = &chaperonev1.Obligations{}
	}
	enc, ok := obligationsHeader(obl)
	if !ok {
		// Not JSON-able (a string that is not UTF-8): protojson says why.
		if _, err := protojson.Marshal(obl); err != nil {
			return nil, fmt.Errorf("obligations: %w: %w", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("obligations: %w: not UTF-8", ErrUnavailable)
	}
	// Every part of the answer in one allocation.
	a := &struct {
		resp    authv3.CheckResponse
		status  status.Status
		ok      authv3.CheckResponse_OkResponse
		okResp  authv3.OkHttpResponse
		opts    [2]corev3.HeaderValueOption
		vals    [2]corev3.HeaderValue
		optPtrs [2]*corev3.HeaderValueOption
		remove  [2]string
	}{remove: [2]string{HeaderDecisionID, HeaderObligations}}
	a.status.Code = int32(code.Code_OK)
	a.vals[0] = corev3.HeaderValue{Key: HeaderDecisionID, Value: decisionID}
	a.vals[1] = corev3.HeaderValue{Key: HeaderObligations, Value: enc}
	for i := range a.opts {
		a.opts[i].Header = &a.vals[i]
		a.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		a.optPtrs[i] = &a.opts[i]
	}
	a.okResp.Headers = a.optPtrs[:]
	a.okResp.HeadersToRemove = a.remove[:]
	a.ok.OkResponse = &a.okResp
	a.resp.Status = &a.status
	a.resp.HttpResponse = &a.ok
	return &a.resp, nil
}

// headers are the request's headers: the headers map, or header_map when
// Envoy sends raw headers. HTTP/2 pseudo-headers (":path") are left out.
// It is h.Add of every header, with the names Envoy usually sends
// canonicalized by a table lookup and the first value of every name in
// one shared array (cap 1 each, so a second value is appended elsewhere).
func headers(hr *authv3.AttributeContext_HttpRequest) http.Header {
	hs, hm := hr.GetHeaders(), hr.GetHeaderMap().GetHeaders()
	h := make(http.Header, len(hs)+len(hm))
	vals := make([]string, 0, len(hs)+len(hm))
	add := func(k, v string) {
		k = canonicalKey(k)
		if old, ok := h[k]; ok {
			h[k] = append(old, v)
			return
		}
		vals = append(vals, v)
		n := len(vals)
		h[k] = vals[n-1 : n : n]
	}
	for k, v := range hs {
		if !strings.HasPrefix(k, ":") {
			add(k, v)
		}
	}
	for _, hv := range hm {
		if strings.HasPrefix(hv.GetKey(), ":") {
			continue
		}
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		add(hv.GetKey(), v)
	}
	return h
}

// canonicalKey is http.CanonicalHeaderKey(k), looked up in
// commonHeaders when k is there (no allocation).
func canonicalKey(k string) string {
	if c, ok := commonHeaders[k]; ok {
		return c
	}
	return http.CanonicalHeaderKey(k)
}

// commonHeaders maps header names as Envoy sends them (lower case) to
// their canonical form.
var commonHeaders = canonicalTable(
	"accept", "accept-encoding", "accept-language", "authorization",
	"cache-control", "content-length", "content-type", "cookie", "host",
	"if-match", "if-modified-since", "if-none-exist", "if-none-match",
	"origin", "prefer", "referer", "te", "traceparent", "tracestate",
	"user-agent", "via", "x-b3-sampled", "x-b3-spanid", "x-b3-traceid",
	"x-envoy-auth-partial-body", "x-envoy-expected-rq-timeout-ms",
	"x-envoy-internal", "x-forwarded-client-cert", "x-forwarded-for",
	"x-forwarded-host", "x-forwarded-proto", "x-http-method",
	"x-http-method-override", "x-method-override", "x-purpose-of-use",
	"x-real-ip", "x-request-id", HeaderDecisionID, HeaderObligations,
)

func canonicalTable(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = http.CanonicalHeaderKey(n)
	}
	return m
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// denied is a DENY answered with HTTP status and an OperationOutcome
// naming codes.
func denied(httpStatus int, decisionID string, codes []string) *authv3.CheckResponse {
	return deniedBody(httpStatus, decisionID, gateway.OperationOutcome(httpStatus, codes))
}

// deniedEntry is the DENY of a batch or transaction whose entry i is
// denied for codes.
func deniedEntry(httpStatus int, decisionID string, entry int, codes []string) *authv3.CheckResponse {
	return deniedBody(httpStatus, decisionID, gateway.EntryOutcome(httpStatus, entry, codes))
}

func deniedBody(httpStatus int, decisionID string, body []byte) *authv3.CheckResponse {
	hs := []*corev3.HeaderValueOption{header("content-type", "application/fhir+json")}
	if decisionID != "" {
		hs = append(hs, header(HeaderDecisionID, decisionID))
	}
	if httpStatus == http.StatusUnauthorized {
		hs = append(hs, header("www-authenticate", `Bearer error="invalid_token"`))
	}
	sc := typev3.StatusCode_Forbidden
	if httpStatus == http.StatusUnauthorized {
		sc = typev3.StatusCode_Unauthorized
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: sc},
			Headers: hs,
			Body:    string(body),
		}},
	}
}
