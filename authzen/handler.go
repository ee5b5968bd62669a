package authzen

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/chaperone-pdp/chaperone/callers"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Paths of the door.
const (
	EvaluationPath    = "/access/v1/evaluation"
	EvaluationsPath   = "/access/v1/evaluations"
	ConfigurationPath = "/.well-known/authzen-configuration"
)

// Procedure names the guard authorizes the door's routes by. A callers
// file grants the whole door with the service name, or single methods.
const (
	Service                = "authzen.v1.AccessEvaluationService"
	EvaluationProcedure    = "/" + Service + "/Evaluation"
	EvaluationsProcedure   = "/" + Service + "/Evaluations"
	ConfigurationProcedure = "/" + Service + "/Configuration"
)

// Decider decides CheckRequests; *server.Server is one.
type Decider interface {
	// Decide validates, decides, audits and logs req as Check does; an
	// invalid req is a *validation.Error. amend may replace the answer
	// before it is recorded.
	Decide(ctx context.Context, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error)
	// ChargeDecisions takes the rate limit cost of n decisions of a batch
	// request; a *callers.RateLimitError when the caller has too few left.
	ChargeDecisions(ctx context.Context, n int) error
}

// Defaults of a [Handler].
const (
	DefaultMaxBytes       = 4 << 20
	DefaultMaxEvaluations = 1000
)

// Handler serves the door.
type Handler struct {
	decider        Decider
	logger         *slog.Logger
	maxBytes       int64
	maxEvaluations int
}

// Option configures a [Handler].
type Option func(*Handler)

// WithLogger logs requests that fail inside the server (error level).
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.logger = l } }

// WithMaxBytes bounds a request body (default [DefaultMaxBytes]); a larger
// one is answered 413.
func WithMaxBytes(n int64) Option { return func(h *Handler) { h.maxBytes = n } }

// WithMaxEvaluations bounds the items of an evaluations request (default
// [DefaultMaxEvaluations], as BatchCheck); more are answered 413.
func WithMaxEvaluations(n int) Option { return func(h *Handler) { h.maxEvaluations = n } }

// New returns the door deciding through d.
func New(d Decider, opts ...Option) *Handler {
	h := &Handler{decider: d, logger: slog.New(slog.DiscardHandler), maxBytes: DefaultMaxBytes, maxEvaluations: DefaultMaxEvaluations}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Route is one route of the door: a ServeMux pattern, the procedure name
// it is authorized by, its handler, and whether it carries several
// decisions (and pays for them with ChargeDecisions).
type Route struct {
	Pattern, Procedure string
	Handler            http.Handler
	Batch              bool
}

// Routes are the door's three routes.
func (h *Handler) Routes() []Route {
	return []Route{
		{"POST " + EvaluationPath, EvaluationProcedure, http.HandlerFunc(h.ServeEvaluation), false},
		{"POST " + EvaluationsPath, EvaluationsProcedure, http.HandlerFunc(h.ServeEvaluations), true},
		{"GET " + ConfigurationPath, ConfigurationProcedure, http.HandlerFunc(h.ServeConfiguration), false},
	}
}

// decisionJSON is an access evaluation response.
type decisionJSON struct {
	Decision bool         `json:"decision"`
	Context  *decisionCtx `json:"context,omitempty"`
}

type decisionCtx struct {
	DecisionID     string            `json:"decision_id,omitempty"`
	BundleRevision string            `json:"bundle_revision,omitempty"`
	Reasons        []string          `json:"reasons"`
	Obligations    []obligationJSON  `json:"obligations"`
	ReasonAdmin    map[string]string `json:"reason_admin,omitempty"`
}

type evaluationsResponseJSON struct {
	Evaluations []decisionJSON `json:"evaluations"`
}

// ServeEvaluation answers POST /access/v1/evaluation.
func (h *Handler) ServeEvaluation(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	var ev evaluationJSON
	if !plainEvaluation(body, &ev) {
		if err := decode(body, &ev); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	if err := ev.complete(""); err != nil {
		h.fail(w, r, err)
		return
	}
	d, err := h.evaluate(r.Context(), &ev)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeDecision(w, &d)
}

// ServeEvaluations answers POST /access/v1/evaluations.
func (h *Handler) ServeEvaluations(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	var req evaluationsJSON
	if err := decode(body, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	semantic, err := req.semantic()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if len(req.Evaluations) == 0 {
		// No items: a single evaluation, answered as one.
		if err := req.complete(""); err != nil {
			h.fail(w, r, err)
			return
		}
		if err := h.decider.ChargeDecisions(r.Context(), 1); err != nil {
			h.fail(w, r, err)
			return
		}
		d, err := h.evaluate(r.Context(), &req.evaluationJSON)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeDecision(w, &d)
		return
	}
	if len(req.Evaluations) > h.maxEvaluations {
		http.Error(w, "evaluations: more than "+strconv.Itoa(h.maxEvaluations)+" items", http.StatusRequestEntityTooLarge)
		return
	}
	items := make([]evaluationJSON, len(req.Evaluations))
	for i, item := range req.Evaluations {
		items[i] = item.withDefaults(&req.evaluationJSON)
		if err := items[i].complete("evaluations[" + strconv.Itoa(i) + "]."); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	if err := h.decider.ChargeDecisions(r.Context(), len(items)); err != nil {
		h.fail(w, r, err)
		return
	}
	out := evaluationsResponseJSON{Evaluations: make([]decisionJSON, 0, len(items))}
	for i := range items {
		d, err := h.evaluate(r.Context(), &items[i])
		if err != nil {
			h.fail(w, r, err)
			return
		}
		out.Evaluations = append(out.Evaluations, d)
		if semantic == DenyOnFirstDeny && !d.Decision || semantic == PermitOnFirstPermit && d.Decision {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// evaluate decides one complete evaluation. The error is one the request
// cannot be answered with a decision for (the rules could not run).
func (h *Handler) evaluate(ctx context.Context, ev *evaluationJSON) (decisionJSON, error) {
	m, ref := toCheck(ev)
	if ref != nil {
		return refused(ref), nil
	}
	resp, err := h.decider.Decide(ctx, m.req, requireSupported(m.supported))
	if err != nil {
		var verr *validation.Error
		if !errors.As(err, &verr) {
			return decisionJSON{}, err
		}
		msgs := make([]string, len(verr.Violations))
		for i, v := range verr.Violations {
			msgs[i] = v.Message
			if v.Field != "" {
				msgs[i] = authzenPath(v.Field) + ": " + v.Message
			}
		}
		return refused(&refusal{ReasonInvalidRequest, strings.Join(msgs, "; ")}), nil
	}
	return answer(resp), nil
}

// refused is the decision false of a refusal: no decision id (nothing was
// decided or recorded), the reason and its message.
func refused(r *refusal) decisionJSON {
	return decisionJSON{Decision: false, Context: &decisionCtx{
		Reasons:     []string{r.code},
		Obligations: []obligationJSON{},
		ReasonAdmin: map[string]string{"en": r.message},
	}}
}

// answer is resp in AuthZEN's terms.
func answer(resp *chaperonev1.CheckResponse) decisionJSON {
	reasons := make([]string, len(resp.GetReasons()))
	for i, r := range resp.GetReasons() {
		reasons[i] = r.GetCode()
	}
	c := &decisionCtx{
		DecisionID:     resp.GetDecisionId(),
		BundleRevision: resp.GetBundleRevision(),
		Reasons:        reasons,
		Obligations:    obligations(resp.GetObligations()),
	}
	if len(reasons) == 1 && reasons[0] == ReasonObligationUnsupported {
		c.ReasonAdmin = map[string]string{"en": resp.GetReasons()[0].GetMessage()}
	}
	return decisionJSON{Decision: resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW, Context: c}
}

// configurationJSON is the PDP metadata.
type configurationJSON struct {
	PolicyDecisionPoint       string   `json:"policy_decision_point"`
	AccessEvaluationEndpoint  string   `json:"access_evaluation_endpoint"`
	AccessEvaluationsEndpoint string   `json:"access_evaluations_endpoint"`
	Capabilities              []string `json:"capabilities"`
	SupportedObligations      []string `json:"supported_obligations"`
}

// ServeConfiguration answers GET /.well-known/authzen-configuration with
// URLs on the scheme and host the request was made to (the server does not
// trust X-Forwarded-* headers for them).
func (h *Handler) ServeConfiguration(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	writeJSON(w, http.StatusOK, configurationJSON{
		PolicyDecisionPoint:       base,
		AccessEvaluationEndpoint:  base + EvaluationPath,
		AccessEvaluationsEndpoint: base + EvaluationsPath,
		Capabilities:              []string{},
		SupportedObligations:      SupportedObligations(),
	})
}

// body reads the request body, answering 400 for a Content-Type other than
// application/json and 413 for one too large.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusBadRequest)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "request body larger than "+strconv.FormatInt(h.maxBytes, 10)+" bytes", http.StatusRequestEntityTooLarge)
			return nil, false
		}
		http.Error(w, "request body could not be read", http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// fail answers a request that gets no decision.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad *badRequest
	var rl *callers.RateLimitError
	switch {
	case errors.As(err, &bad):
		http.Error(w, bad.msg, http.StatusBadRequest)
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.FormatInt(int64((rl.RetryAfter+time.Second-1)/time.Second), 10))
		http.Error(w, rl.Error(), http.StatusTooManyRequests)
	default:
		h.logger.LogAttrs(r.Context(), slog.LevelError, "authzen evaluation failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// echoRequestID returns the request's X-Request-ID, unless a middleware in
// front (the server's guard) has already set the response's.
func echoRequestID(w http.ResponseWriter, r *http.Request) {
	if w.Header().Get("X-Request-Id") != "" {
		return
	}
	if id := r.Header.Get("X-Request-Id"); id != "" {
		w.Header().Set("X-Request-Id", id)
	}
}

// writeDecision answers 200 with d, written by appendDecision when it can.
func writeDecision(w http.ResponseWriter, d *decisionJSON) {
	b, ok := appendDecision(make([]byte, 0, 512), d)
	if !ok {
		writeJSON(w, http.StatusOK, d)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
