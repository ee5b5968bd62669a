package consent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-pdp/chaperone/consentstore"
)

// Decision is the outcome of consent evaluation.
type Decision uint8

// Decisions. The zero Decision is NoConsent: no consent applies.
const (
	NoConsent Decision = iota
	Permit
	Deny
)

func (d Decision) String() string {
	switch d {
	case Permit:
		return "PERMIT"
	case Deny:
		return "DENY"
	}
	return "NO_CONSENT"
}

// Rule picks the decision when several consents apply.
type Rule uint8

// Rules.
const (
	// MostRecent: the most recent applicable consent decides (the default).
	MostRecent Rule = iota
	// DenyOverrides: any applicable deny decides.
	DenyOverrides
)

func (r Rule) String() string {
	if r == DenyOverrides {
		return "deny-overrides"
	}
	return "most-recent"
}

// ParseRule reads "most-recent" (or "") and "deny-overrides".
func ParseRule(s string) (Rule, error) {
	switch s {
	case "", "most-recent":
		return MostRecent, nil
	case "deny-overrides":
		return DenyOverrides, nil
	}
	return 0, fmt.Errorf("consent rule %q: want most-recent or deny-overrides", s)
}

// Result is the outcome of [Evaluate]. Its slices may be shared with the
// compiled consents and must not be modified.
type Result struct {
	Decision Decision
	// Consents are the consents that decided.
	Consents []consentstore.ConsentRef
	// Provisions name the provisions that decided, "Consent/<id>#<path>".
	Provisions []string
	// RedactLabels are security labels whose resources must be withheld
	// (residual obligations of deny provisions a search could not match).
	RedactLabels []consentstore.Coding
	// NamesSubject is set on a Permit when a deciding provision (or one of
	// its ancestors) has an actor that is the requesting subject itself, by
	// reference or by one of the subject's own identifiers, as a recipient:
	// the consent delegates to this person, not only to anyone.
	NamesSubject bool
}

// outcome is the evaluation of one consent.
type outcome struct {
	effect consentstore.Effect // 0: the consent does not decide
	provs  []string
	redact []consentstore.Coding
	named  bool
}

// Evaluate decides q against consents (typically one patient's, from the
// store; consents of other patients and inactive ones are skipped).
func Evaluate(q *Query, consents []*consentstore.Consent, rule Rule) Result {
	var (
		res      Result
		bestTime time.Time
		found    bool
	)
	for _, c := range consents {
		o, ok := evalConsent(q, c)
		if !ok {
			continue
		}
		d := Permit
		if o.effect == consentstore.Deny {
			d = Deny
		}
		switch {
		case !found:
		case rule == MostRecent && c.DateTime.After(bestTime):
		case rule == MostRecent && c.DateTime.Before(bestTime):
			continue
		case d == res.Decision:
			res.Consents = join(res.Consents, c.RefSlice())
			res.Provisions = join(res.Provisions, o.provs)
			res.RedactLabels = joinCodings(res.RedactLabels, o.redact)
			res.NamesSubject = res.NamesSubject || o.named
			continue
		case d == Deny:
			// deny wins a tie (most-recent) or overrides (deny-overrides)
		default:
			continue
		}
		found = true
		bestTime = c.DateTime
		res = Result{Decision: d, Consents: c.RefSlice(), Provisions: o.provs, RedactLabels: o.redact, NamesSubject: o.named}
	}
	if res.Decision == Deny {
		res.RedactLabels = nil
		res.NamesSubject = false
	}
	return res
}

// evalConsent evaluates one consent; ok is false when it does not apply.
// A root deny provision that a search matches but for its security labels
// (matchResidual) permits with those labels to redact: the consent denies
// only the labelled data, which the caller withholds from the results.
func evalConsent(q *Query, c *consentstore.Consent) (outcome, bool) {
	if !c.Active() || q.patient == "" || c.Patient != q.patient {
		return outcome{}, false
	}
	switch c.Scope {
	case consentstore.ScopeResearch:
		if !q.research {
			return outcome{}, false
		}
	case consentstore.ScopeTreatment, consentstore.ScopeAdvanceDirective:
		return outcome{}, false
	}
	if !c.Validity.Contains(q.time) {
		return outcome{}, false
	}
	switch match(q, c.Root) {
	case matchNo:
		return outcome{}, false
	case matchResidual:
		return outcome{effect: consentstore.Permit, provs: c.Root.RefSlice(), redact: c.Root.RedactLabels()}, true
	}
	eff, provs, redact, named := decide(q, c.Root)
	return outcome{effect: eff, provs: provs, redact: redact, named: named}, true
}

// decide returns the decision of a matching provision p: that of its
// deepest matching descendants (deny wins among siblings), else its own.
// named reports whether p or a deciding descendant names the subject.
func decide(q *Query, p *consentstore.Provision) (consentstore.Effect, []string, []consentstore.Coding, bool) {
	var (
		eff    consentstore.Effect
		provs  []string
		redact []consentstore.Coding
		resid  []consentstore.Coding
		named  bool
	)
	for _, ch := range p.Children {
		switch match(q, ch) {
		case matchNo:
			continue
		case matchResidual:
			resid = joinCodings(resid, ch.RedactLabels())
			continue
		}
		e, ps, rs, nm := decide(q, ch)
		switch {
		case eff == 0 || (e == consentstore.Deny && eff == consentstore.Permit):
			eff, provs, redact, named = e, ps, rs, nm
		case e == eff:
			provs = join(provs, ps)
			redact = joinCodings(redact, rs)
			named = named || nm
		}
	}
	if eff == 0 {
		eff, provs = p.Effect, p.RefSlice()
	}
	if eff == consentstore.Deny {
		return eff, provs, nil, false
	}
	return eff, provs, joinCodings(redact, resid), named || namesSubject(q, p)
}

// namesSubject reports whether one of p's actors is the requesting subject
// itself (a recipient given by the subject's reference or one of its own
// identifiers), not its organization or any holder of a role.
func namesSubject(q *Query, p *consentstore.Provision) bool {
	for i := range p.Actors {
		a := &p.Actors[i]
		if a.Target != consentstore.TargetRecipient || a.AnyRecipient {
			continue
		}
		if a.Reference != "" && a.Reference == q.subjectID {
			return true
		}
		if a.Identifier.Value != "" {
			for _, id := range q.idents[:q.ownIdents] {
				if id.Value == a.Identifier.Value && consentstore.SameSystem(strings.TrimRight(a.Identifier.System, "/"), id.System) {
					return true
				}
			}
		}
	}
	return false
}

// join returns a followed by b, without allocating when either is empty
// (the result may then share storage with a or b).
func join[T comparable](a, b []T) []T {
	switch {
	case len(b) == 0:
		return a
	case len(a) == 0:
		return b
	}
	out := make([]T, 0, len(a)+len(b))
	out = append(out, a...)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func joinCodings(a, b []consentstore.Coding) []consentstore.Coding { return join(a, b) }
