package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// ForwardPath is the path of the forward-auth door.
const ForwardPath = "/authz/forward"

// Procedure names the guard authorizes the door by. A callers file grants
// it with the service name or the procedure.
const (
	Service          = "chaperone.gateway.v1.ForwardAuthService"
	ForwardProcedure = "/" + Service + "/Forward"
)

// Headers of the door's answers.
const (
	HeaderDecisionID  = "X-Chaperone-Decision-Id"
	HeaderObligations = "X-Chaperone-Obligations"
)

// ReasonSystem is the code system of the reason codes in an
// OperationOutcome.
const ReasonSystem = "https://chaperone-pdp.org/CodeSystem/reason"

// Decider decides CheckRequests; *server.Server is one.
type Decider interface {
	Decide(ctx context.Context, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error)
}

// Door is the forward-auth door.
type Door struct {
	g      *Gateway
	d      Decider
	logger *slog.Logger
}

// NewDoor returns the door mapping with g and deciding through d; logger
// (nil: none) logs failures inside the server.
func NewDoor(g *Gateway, d Decider, logger *slog.Logger) *Door {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Door{g: g, d: d, logger: logger}
}

// Pattern is the ServeMux pattern of the door: every method.
func (*Door) Pattern() string { return ForwardPath }

// original is the method and URI of the request the gateway asks about.
func original(h http.Header) (method, uri string, ok bool) {
	one := func(names ...string) (string, bool) {
		var v string
		for _, n := range names {
			vs := h.Values(n)
			if len(vs) > 1 {
				return "", false
			}
			if len(vs) == 1 {
				if v != "" && v != vs[0] {
					return "", false // nginx and Traefik names disagree
				}
				v = vs[0]
			}
		}
		return v, v != ""
	}
	method, ok1 := one("X-Original-Method", "X-Forwarded-Method")
	uri, ok2 := one("X-Original-URI", "X-Forwarded-Uri")
	return method, uri, ok1 && ok2
}

// ServeHTTP answers one forward-auth sub-request.
func (d *Door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	method, uri, ok := original(r.Header)
	if !ok {
		writeOutcome(w, http.StatusForbidden, "", []string{ReasonOriginalRequest})
		return
	}
	ctx := r.Context()
	req, err := d.g.Map(ctx, method, uri, r.Header)
	if err != nil {
		var ref *Refusal
		if !errors.As(err, &ref) {
			ref = forbidden(ReasonInvalidRequest, "")
		}
		if ref.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		writeOutcome(w, ref.Status, ref.Record(ctx, d.d), []string{ref.Code})
		return
	}
	resp, err := d.d.Decide(ctx, req.Check, d.g.Amend(req))
	if err != nil {
		var ve *validation.Error
		if errors.As(err, &ve) {
			writeOutcome(w, http.StatusForbidden, "", []string{ReasonInvalidRequest})
			return
		}
		d.logger.ErrorContext(ctx, "forward-auth decision failed", slog.String("error", err.Error()))
		writeOutcome(w, http.StatusInternalServerError, "", []string{"INTERNAL"})
		return
	}
	if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
		var codes []string
		for _, rs := range resp.GetReasons() {
			codes = append(codes, rs.GetCode())
		}
		if len(codes) == 0 {
			codes = []string{"DENY"}
		}
		writeOutcome(w, http.StatusForbidden, resp.GetDecisionId(), codes)
		return
	}
	obl := resp.GetObligations()
	if obl == nil {
		obl = &chaperonev1.Obligations{}
	}
	b, err := protojson.Marshal(obl)
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, "", []string{"INTERNAL"})
		return
	}
	w.Header().Set(HeaderDecisionID, resp.GetDecisionId())
	w.Header().Set(HeaderObligations, base64.RawURLEncoding.EncodeToString(b))
	w.WriteHeader(http.StatusOK)
}

// Amend is the amendment (server.Decide's amend) that completes the
// engine's ALLOW of req for the request phase: it carries perEntryCheck
// when the door has not seen what the request returns or changes, and is
// a DENY NO_RESOURCE_ENFORCEMENT when nothing behind the gateway would
// check it. Every gateway door decides with it.
func (g *Gateway) Amend(req *Request) func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
	return func(resp *chaperonev1.CheckResponse) *chaperonev1.CheckResponse {
		if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
			return resp
		}
		if (req.Resolved || !needsResourcePhase(req.Mapped)) && !resp.GetObligations().GetPerEntryCheck() {
			return resp
		}
		out := proto.CloneOf(resp)
		if g.cfg.ResourcePhase == PhaseNone {
			out.Decision = chaperonev1.Decision_DECISION_DENY
			out.Obligations = nil
			out.CacheTtl = nil
			out.Reasons = []*chaperonev1.Reason{{Code: ReasonNoResourceEnforcement, Message: "the answer must be checked entry by entry and resourcePhase is none"}}
			return out
		}
		if out.Obligations == nil {
			out.Obligations = &chaperonev1.Obligations{}
		}
		out.Obligations.PerEntryCheck = true
		return out
	}
}

// outcome is a FHIR OperationOutcome naming reason codes.
type outcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []issue `json:"issue"`
}

type issue struct {
	Severity   string   `json:"severity"`
	Code       string   `json:"code"`
	Details    details  `json:"details"`
	Expression []string `json:"expression,omitempty"`
}

type details struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text"`
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// writeOutcome answers status with an OperationOutcome of one issue per
// reason code: codes only, nothing of the request.
func writeOutcome(w http.ResponseWriter, status int, decisionID string, codes []string) {
	b := OperationOutcome(status, codes)
	if decisionID != "" {
		w.Header().Set(HeaderDecisionID, decisionID)
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// OperationOutcome is the application/fhir+json body of a refusal with
// HTTP status: one issue per reason code, codes only, nothing of the
// request. Every gateway door answers with it.
func OperationOutcome(status int, codes []string) []byte {
	return operationOutcome(status, codes, nil)
}

// EntryOutcome is [OperationOutcome] for a batch or transaction refused
// because of its entry i: every issue's expression is Bundle.entry[i].
func EntryOutcome(status int, entry int, codes []string) []byte {
	return OperationOutcomeAt(status, codes, entryExpression(entry))
}

// OperationOutcomeAt is [OperationOutcome] whose issues name the part of
// the request refused by a FHIRPath expression ("" for none).
func OperationOutcomeAt(status int, codes []string, expression string) []byte {
	if expression == "" {
		return operationOutcome(status, codes, nil)
	}
	return operationOutcome(status, codes, []string{expression})
}

func operationOutcome(status int, codes, expression []string) []byte {
	kind := "forbidden"
	switch status {
	case http.StatusUnauthorized:
		kind = "login"
	case http.StatusInternalServerError:
		kind = "exception"
	}
	if b, ok := appendOutcome(nil, kind, codes, expression); ok {
		return b
	}
	o := outcome{ResourceType: "OperationOutcome"}
	for _, c := range codes {
		o.Issue = append(o.Issue, issue{Severity: "error", Code: kind, Details: details{Coding: []coding{{System: ReasonSystem, Code: c}}, Text: c}, Expression: expression})
	}
	b, _ := json.Marshal(o) // strings only: cannot fail
	return b
}

// appendOutcome writes the JSON json.Marshal writes for the outcome of
// kind, codes and expression, byte for byte, without reflection, when
// every string is plain (plainJSON); ok is false otherwise (json.Marshal
// then writes it, escapes and all). A property test holds the two equal.
func appendOutcome(b []byte, kind string, codes, expression []string) (_ []byte, ok bool) {
	for _, c := range codes {
		if !plainJSON(c) {
			return nil, false
		}
	}
	for _, e := range expression {
		if !plainJSON(e) {
			return nil, false
		}
	}
	b = append(b, `{"resourceType":"OperationOutcome","issue":`...)
	if len(codes) == 0 {
		return append(b, "null}"...), true
	}
	b = append(b, '[')
	for i, c := range codes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"severity":"error","code":"`...)
		b = append(b, kind...)
		b = append(b, `","details":{"coding":[{"system":"`+ReasonSystem+`","code":"`...)
		b = append(b, c...)
		b = append(b, `"}],"text":"`...)
		b = append(b, c...)
		b = append(b, `"}`...)
		if len(expression) > 0 {
			b = append(b, `,"expression":[`...)
			for j, e := range expression {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = append(b, e...)
				b = append(b, '"')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), true
}

// plainJSON reports whether json.Marshal writes s as is between quotes:
// printable ASCII other than the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
