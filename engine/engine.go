package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// ConsentDecision is the consent layer's decision, as policies see it in
// context.consent (Cedar) and input.consent.decision (Rego).
type ConsentDecision string

// Consent decisions.
const (
	ConsentPermit    ConsentDecision = "PERMIT"
	ConsentDeny      ConsentDecision = "DENY"
	ConsentNoConsent ConsentDecision = "NO_CONSENT"
)

// ConsentResult is the consent layer's answer for one request.
type ConsentResult struct {
	// Decision is ConsentPermit, ConsentDeny or ConsentNoConsent.
	Decision ConsentDecision
	// Consents are the consent records evaluated, with their versions.
	Consents []*chaperonev1.ConsentRef
	// Provisions name the consent provisions that decided, e.g.
	// "Consent/c1#provision.provision[0]".
	Provisions []string
	// RedactLabels are residual obligations of a permitted search.
	RedactLabels []*chaperonev1.Coding
	// NamesSubject is set on a PERMIT whose deciding provision names the
	// requesting subject itself as a recipient actor (a delegation).
	NamesSubject bool
	// NamesRecipient is set on a PERMIT whose deciding provision names the
	// subject itself or the subject's organization as a recipient actor
	// (by reference, or by identifier with the same system).
	NamesRecipient bool
	// RestrictsRecipient is set on a DENY whose deciding provision names
	// the subject or its organization: a restriction aimed at this
	// recipient rather than a general opt-out of sharing.
	RestrictsRecipient bool
	// Deciding describes the consent that decided a PERMIT or a DENY
	// (zero for NO_CONSENT): policies see it as context.decidingConsent
	// (Cedar) and input.consent.deciding (Rego).
	Deciding DecidingConsent
}

// DecidingConsent is what policies see of the consent that decided: of
// the consents that stand, the most recent one, and its first deciding
// provision.
type DecidingConsent struct {
	// ID is the consent's id ("" when no consent decided).
	ID string
	// Provision is the path of the deciding provision in the resource,
	// e.g. "provision.provision[1]" (R4) or "provision[0]" (R5).
	Provision string
	// Scope is the consent's scope: "patient-privacy", "research",
	// "treatment", "adr" or "unknown" ("" when no consent decided).
	Scope string
	// Categories are the consent's category codings, "system|code".
	Categories []string
	// Purposes are the purpose of use codes of the deciding provision and
	// its ancestors.
	Purposes []string
}

// ConsentEvaluator answers the consent question for one request at the
// decision time at. rule is the bundle's consent rule, parsed once when the
// bundle loads. An error
// means the consent state is unknown; the engine then denies with
// CONSENT_UNAVAILABLE.
type ConsentEvaluator interface {
	EvaluateConsent(ctx context.Context, req *chaperonev1.CheckRequest, at time.Time, rule consent.Rule) (ConsentResult, error)
}

// Engine decides requests against the active bundle. It is safe for
// concurrent use; [Engine.Activate] swaps the bundle atomically.
type Engine struct {
	active     atomic.Pointer[active]
	memoSize   int
	consents   ConsentEvaluator
	grants     GrantLookup
	agreements AgreementLookup
	// relationships answers context.treatingRelationship.
	relationships RelationshipLookup
	logger        *slog.Logger
	now           func() time.Time
	// requestTime: decide at req.context.time when it is set (offline
	// tools); otherwise always at now.
	requestTime bool
	newID       func() string
}

// Option configures an [Engine].
type Option func(*Engine)

// WithLogger sets the logger for evaluation errors (identifiers only, no PHI).
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.logger = l } }

// WithClock sets the engine's decision clock (default time.Now). Policies,
// consent periods, grants and agreements all see this time; a request's
// context.time is ignored unless [WithRequestTime] is given.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithRequestTime makes the engine decide at a request's context.time when
// it is set, and at the clock's time otherwise. It is for offline tools
// (chaperone check, chaperone test, bundle diff) and replays: a server that
// let callers choose the decision clock would let them step around every
// expiry, period and office hour.
func WithRequestTime() Option { return func(e *Engine) { e.requestTime = true } }

// DefaultMemoSize is how many policy outcomes an engine remembers per
// active bundle unless [WithMemo] says otherwise.
const DefaultMemoSize = 50000

// WithMemo sets how many policy outcomes the engine remembers per active
// bundle (default [DefaultMemoSize]; 0 or less turns memoisation off).
func WithMemo(size int) Option { return func(e *Engine) { e.memoSize = size } }

// WithDecisionIDs sets the generator of decision ids (tests pin them).
func WithDecisionIDs(f func() string) Option { return func(e *Engine) { e.newID = f } }

// New returns an engine that asks consents for the consent decision of
// every request about a patient. It has no bundle until [Engine.Activate].
func New(consents ConsentEvaluator, opts ...Option) *Engine {
	e := &Engine{
		consents: consents,
		logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:      time.Now,
		memoSize: DefaultMemoSize,
	}
	for _, o := range opts {
		o(e)
	}
	if e.newID == nil {
		ids := &decisionIDs{now: time.Now}
		e.newID = ids.next
	}
	return e
}

// active is a bundle with the memos of its outcomes: the decision memo,
// keyed on every input a policy can see, and one per layer that knows the
// part of the input it reads (nil where it does not).
type active struct {
	bundle     *Bundle
	memo       *memo[*outcome]
	layerMemos []*memo[*layerResult]
}

// memoLayer is a layer that can remember its results in a memo of its
// own, keyed on the part of the facts it reads.
type memoLayer interface {
	evaluateMemo(ctx context.Context, f *facts, m *memo[*layerResult]) (layerResult, error)
}

// Activate makes b the bundle every later decision uses.
func (e *Engine) Activate(b *Bundle) {
	a := &active{bundle: b}
	if b.deterministic() {
		a.memo = newMemo[*outcome](e.memoSize)
		a.layerMemos = make([]*memo[*layerResult], len(b.layers))
		for i, l := range b.layers {
			if _, ok := l.(memoLayer); ok {
				a.layerMemos[i] = newMemo[*layerResult](e.memoSize)
			}
		}
	}
	e.active.Store(a)
}

// Bundle returns the active bundle, or nil.
func (e *Engine) Bundle() *Bundle {
	if a := e.active.Load(); a != nil {
		return a.bundle
	}
	return nil
}

// Check decides one request. The request must have been validated
// ([ValidateRequest]). Check never fails: every problem is a DENY with a
// reason code.
func (e *Engine) Check(ctx context.Context, req *chaperonev1.CheckRequest) *chaperonev1.CheckResponse {
	return e.decide(ctx, req, nil)
}

// Explain decides one request like [Engine.Check] and also returns the trace
// of how each layer answered.
func (e *Engine) Explain(ctx context.Context, req *chaperonev1.CheckRequest) (*chaperonev1.CheckResponse, *Trace) {
	t := &Trace{}
	return e.decide(ctx, req, t), t
}

// Trace is the record of how a decision was reached.
type Trace struct {
	Revision string       `json:"revision"`
	Consent  *ConsentStep `json:"consent,omitempty"`
	Facts    *FactsStep   `json:"facts,omitempty"`
	Layers   []LayerStep  `json:"layers"`
	Outcome  string       `json:"outcome"`
}

// ConsentStep is the consent layer's part of a [Trace].
type ConsentStep struct {
	Decision   ConsentDecision `json:"decision"`
	Consents   []string        `json:"consents,omitempty"`
	Provisions []string        `json:"provisions,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// FactsStep is what the access facts said.
type FactsStep struct {
	BreakGlassGrant bool `json:"breakGlassGrant"`
	Agreement       bool `json:"agreement"`
	AgreementActive bool `json:"agreementActive"`
	AgreementCovers bool `json:"agreementCovers"`
	ScopesPresent   bool `json:"scopesPresent"`
	ScopesAllow     bool `json:"scopesAllow"`
	// SameOrganization: subject and resource name the same organization.
	SameOrganization bool `json:"sameOrganization"`
	// Population: a search, history or export of a patient-compartment
	// type with no patient named.
	Population bool `json:"population"`
	// TreatingRelationship: the practitioner has an active treating
	// relationship with the patient.
	TreatingRelationship bool `json:"treatingRelationship"`
}

// LayerStep is one policy layer's part of a [Trace].
type LayerStep struct {
	Layer   string   `json:"layer"`
	Effect  string   `json:"effect"`
	Permits []string `json:"permits,omitempty"`
	Denies  []string `json:"denies,omitempty"`
	// ObligationOnly are the obligation-only policies that matched: their
	// obligations join an ALLOW, they permit nothing.
	ObligationOnly []string `json:"obligationOnly,omitempty"`
	Error          string   `json:"error,omitempty"`
}

// String renders the trace for a person.
func (t *Trace) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bundle revision %s\n", t.Revision)
	if c := t.Consent; c != nil {
		fmt.Fprintf(&b, "consent: %s", c.Decision)
		if len(c.Consents) > 0 {
			fmt.Fprintf(&b, " (consents %s)", strings.Join(c.Consents, ", "))
		}
		if len(c.Provisions) > 0 {
			fmt.Fprintf(&b, " by %s", strings.Join(c.Provisions, ", "))
		}
		if c.Error != "" {
			fmt.Fprintf(&b, " error: %s", c.Error)
		}
		b.WriteString("\n")
	}
	if f := t.Facts; f != nil {
		fmt.Fprintf(&b, "facts: breakGlassGrant=%v agreement=%v (active=%v covers=%v) scopes present=%v allow=%v sameOrganization=%v population=%v treatingRelationship=%v\n",
			f.BreakGlassGrant, f.Agreement, f.AgreementActive, f.AgreementCovers, f.ScopesPresent, f.ScopesAllow, f.SameOrganization, f.Population, f.TreatingRelationship)
	}
	for _, l := range t.Layers {
		fmt.Fprintf(&b, "layer %s: %s", l.Layer, l.Effect)
		if len(l.Permits) > 0 {
			fmt.Fprintf(&b, "; permitted by %s", strings.Join(l.Permits, ", "))
		}
		if len(l.Denies) > 0 {
			fmt.Fprintf(&b, "; denied by %s", strings.Join(l.Denies, ", "))
		}
		if len(l.ObligationOnly) > 0 {
			fmt.Fprintf(&b, "; obligations of %s", strings.Join(l.ObligationOnly, ", "))
		}
		if l.Error != "" {
			fmt.Fprintf(&b, "; error: %s", l.Error)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "outcome: %s\n", t.Outcome)
	return b.String()
}

func (e *Engine) decide(ctx context.Context, req *chaperonev1.CheckRequest, trace *Trace) *chaperonev1.CheckResponse {
	resp := &chaperonev1.CheckResponse{DecisionId: e.newID()}
	a := e.active.Load()
	if a == nil {
		return denyWith(resp, trace, &chaperonev1.Reason{Code: "NO_BUNDLE", Message: "no policy bundle is active"})
	}
	b := a.bundle
	resp.BundleRevision = b.manifest.Revision
	resp.CacheTtl = durationpb.New(b.cacheTTL)
	if trace != nil {
		trace.Revision = b.manifest.Revision
	}

	if r := b.admit(req); r != nil {
		return denyWith(resp, trace, r)
	}

	f := facts{req: req, at: e.now(), consent: ConsentNoConsent}
	if t := req.GetContext().GetTime(); t != nil && e.requestTime {
		f.at = t.AsTime()
	}
	f.exact = f.at
	f.at = truncateTime(f.at, b.timeResolution)
	local := f.at.In(b.locationFor(req.GetSubject().GetOrganization()))
	f.hour, f.minute = local.Hour(), local.Minute()
	f.weekday = weekdays[local.Weekday()]
	f.sameOrganization = sameOrganization(req)
	f.population = population(req)

	var consent ConsentResult
	if req.GetResource().GetPatient() != "" {
		var err error
		consent, err = e.consents.EvaluateConsent(ctx, req, f.exact, b.consentRule)
		if err != nil {
			e.logger.LogAttrs(ctx, slog.LevelError, "consent unavailable",
				slog.String("decision_id", resp.DecisionId), slog.String("error", err.Error()))
			if trace != nil {
				trace.Consent = &ConsentStep{Decision: "UNAVAILABLE", Error: err.Error()}
			}
			return denyWith(resp, trace, &chaperonev1.Reason{Code: "CONSENT_UNAVAILABLE", Message: "consent state is unknown"})
		}
		f.consent = consent.Decision
		f.consentNamesSubject = consent.NamesSubject
		f.consentNamesRecipient = consent.NamesRecipient
		f.consentRestrictsRecipient = consent.RestrictsRecipient
		f.deciding = consent.Deciding
		resp.Consents = consent.Consents
		if trace != nil {
			step := &ConsentStep{Decision: consent.Decision, Provisions: consent.Provisions}
			for _, c := range consent.Consents {
				step.Consents = append(step.Consents, c.GetId()+"@"+c.GetVersion())
			}
			trace.Consent = step
		}
	}

	err := e.gatherAccessFacts(ctx, &f)
	if err == nil {
		err = e.gatherRelationship(ctx, b, &f)
	}
	if err != nil {
		var fe *factError
		errors.As(err, &fe)
		e.logger.LogAttrs(ctx, slog.LevelError, "access facts unavailable",
			slog.String("decision_id", resp.DecisionId), slog.String("error", err.Error()))
		return denyWith(resp, trace, &chaperonev1.Reason{Code: fe.code, Message: "access facts are unknown"})
	}
	if trace != nil {
		trace.Facts = &FactsStep{BreakGlassGrant: f.grant, Agreement: f.agreement.exists, AgreementActive: f.agreement.active,
			AgreementCovers: f.agreement.covers, ScopesPresent: f.scopes.present, ScopesAllow: f.scopes.allows,
			SameOrganization: f.sameOrganization, Population: f.population, TreatingRelationship: f.treating}
	}

	out, err := e.evaluateLayers(ctx, a, &f, trace)
	if err != nil {
		e.logger.LogAttrs(ctx, slog.LevelError, "policy evaluation failed",
			slog.String("decision_id", resp.DecisionId), slog.String("revision", b.manifest.Revision),
			slog.String("error", err.Error()))
		return denyWith(resp, trace, &chaperonev1.Reason{Code: "POLICY_ERROR", Message: "a policy failed to evaluate"})
	}

	switch combine(combineInput{
		consent:        f.consent,
		requireConsent: b.manifest.NoConsent == NoConsentDeny && req.GetResource().GetPatient() != "",
		permits:        out.permits,
		denies:         out.denies,
	}) {
	case verdictForbidden:
		reasons := make([]*chaperonev1.Reason, len(out.denies))
		for i, d := range out.denies {
			reasons[i] = &chaperonev1.Reason{Code: d.code, PolicyId: d.id, Message: d.message}
		}
		return denyWith(resp, trace, reasons...)
	case verdictConsent:
		return denyWith(resp, trace, consentReasons("CONSENT_DENY", consent)...)
	case verdictNoConsent:
		return denyWith(resp, trace, &chaperonev1.Reason{Code: "NO_CONSENT", Message: "no applicable consent and the bundle requires one"})
	case verdictNoPermit:
		return denyWith(resp, trace, &chaperonev1.Reason{Code: "NO_PERMIT", Message: "no policy permits this request"})
	}

	resp.Decision = chaperonev1.Decision_DECISION_ALLOW
	resp.Obligations = engineObligations(&out.obl, &f, consent.RedactLabels)
	for _, p := range out.permits {
		resp.Reasons = append(resp.Reasons, &chaperonev1.Reason{Code: "POLICY_PERMIT", PolicyId: p.id})
	}
	switch f.consent {
	case ConsentPermit:
		resp.Reasons = append(resp.Reasons, consentReasons("CONSENT_PERMIT", consent)...)
	case ConsentDeny:
		resp.Reasons = append(resp.Reasons, consentReasons("CONSENT_OVERRIDDEN", consent)...)
	}
	if trace != nil {
		trace.Outcome = "ALLOW"
	}
	return resp
}

// evaluateLayers runs every policy layer of the active bundle, or returns
// the remembered outcome for the same facts. A trace always evaluates.
func (e *Engine) evaluateLayers(ctx context.Context, a *active, f *facts, trace *Trace) (*outcome, error) {
	var key []byte
	if a.memo != nil && trace == nil {
		bp := keyBufs.Get().(*[]byte)
		defer keyBufs.Put(bp)
		k, err := memoKey((*bp)[:0], f)
		if err == nil {
			key = k
			*bp = k
			if o, ok := a.memo.get(key); ok {
				return o, nil
			}
		}
	}
	out := &outcome{}
	for i, l := range a.bundle.layers {
		var (
			r   layerResult
			err error
		)
		if ml, ok := l.(memoLayer); ok && trace == nil && a.layerMemos != nil {
			r, err = ml.evaluateMemo(ctx, f, a.layerMemos[i])
		} else {
			r, err = l.evaluate(ctx, f)
		}
		if err != nil {
			if trace != nil {
				trace.Layers = append(trace.Layers, LayerStep{Layer: l.name(), Effect: "error", Error: err.Error()})
			}
			return nil, fmt.Errorf("layer %s: %w", l.name(), err)
		}
		if trace != nil {
			step := LayerStep{Layer: l.name(), Effect: r.effect.String()}
			for _, p := range r.permits {
				step.Permits = append(step.Permits, p.id)
			}
			for _, d := range r.denies {
				step.Denies = append(step.Denies, d.id+" ("+d.code+")")
			}
			step.ObligationOnly = r.obligationOnly
			trace.Layers = append(trace.Layers, step)
		}
		switch r.effect {
		case deny:
			out.denies = append(out.denies, r.denies...)
		case permit:
			out.permits = append(out.permits, r.permits...)
			out.obl.merge(&r.obligations)
		default:
			// Obligation-only policies that matched: their obligations
			// join an ALLOW that other policies make, and nothing else.
			out.obl.merge(&r.obligations)
		}
	}
	if key != nil {
		a.memo.put(key, out)
	}
	return out, nil
}

func consentReasons(code string, c ConsentResult) []*chaperonev1.Reason {
	if len(c.Provisions) == 0 {
		return []*chaperonev1.Reason{{Code: code}}
	}
	out := make([]*chaperonev1.Reason, len(c.Provisions))
	for i, p := range c.Provisions {
		out[i] = &chaperonev1.Reason{Code: code, PolicyId: p}
	}
	return out
}

func denyWith(resp *chaperonev1.CheckResponse, trace *Trace, reasons ...*chaperonev1.Reason) *chaperonev1.CheckResponse {
	resp.Decision = chaperonev1.Decision_DECISION_DENY
	resp.Reasons = reasons
	resp.Obligations = &chaperonev1.Obligations{}
	if trace != nil {
		codes := make([]string, len(reasons))
		for i, r := range reasons {
			codes[i] = r.Code
		}
		trace.Outcome = "DENY " + strings.Join(codes, ", ")
	}
	return resp
}

// weekdays are the names of context.localTime.weekday, by time.Weekday.
var weekdays = [7]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}
