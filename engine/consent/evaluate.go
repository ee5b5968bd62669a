package consent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
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
	Consents []fhirconsent.ConsentRef
	// Provisions name the provisions that decided, "Consent/<id>#<path>".
	Provisions []string
	// RedactLabels are security labels whose resources must be withheld
	// (residual obligations of deny provisions a search could not match).
	RedactLabels []fhirconsent.Coding
	// NamesSubject is set on a Permit when a deciding provision (or one of
	// its ancestors) has an actor that is the requesting subject itself, by
	// reference or by one of the subject's own identifiers, as a recipient:
	// the consent delegates to this person, not only to anyone.
	NamesSubject bool
	// NamesRecipient is set on a Permit when a deciding provision (or one
	// of its ancestors) has a recipient actor that is the subject itself or
	// the subject's organization, by reference or by identifier (same
	// system and value): the consent discloses to this recipient, not to
	// anyone.
	NamesRecipient bool
}

// names says which recipients a deciding permit provision names.
type names uint8

const (
	namesSubjectBit names = 1 << iota // the subject itself
	namesOrgBit                       // the subject's organization
)

// outcome is the evaluation of one consent.
type outcome struct {
	effect fhirconsent.Effect // 0: the consent does not decide
	provs  []string
	redact []fhirconsent.Coding
	named  names
	// residual: a root deny that a search matched but for its labels; it
	// decides nothing and only withholds the labelled data.
	residual bool
}

// Evaluate decides q against consents (typically one patient's, from the
// store; consents of other patients and inactive ones are skipped).
//
// A consent PERMIT comes only from a permit provision that applies. Under
// [DenyOverrides] any applicable deny decides, otherwise every applicable
// permit does. Under [MostRecent] the most recent applicable consent decides
// (a deny wins a tie); when that is a permit, every permit newer than the
// most recent applicable deny stands with it: permits do not contradict one
// another, so a newer general permit leaves an older delegation to a named
// person in force, while a newer deny revokes both.
//
// A consent whose root is a deny that a search matches but for its security
// labels (a residual deny) does not decide: it adds those labels to
// RedactLabels, of a PERMIT that other consents give, or of NO_CONSENT when
// nothing permits. Under [MostRecent] a residual older than the newest
// permit that stands is superseded by it.
func Evaluate(q *Query, consents []*fhirconsent.Consent, rule Rule) Result {
	type applicable struct {
		c *fhirconsent.Consent
		o outcome
	}
	var (
		buf                      [8]applicable
		apps                     = buf[:0]
		lastDeny, lastPermit     time.Time
		anyDeny, anyPermit, anyR bool
	)
	for _, c := range consents {
		o, ok := evalConsent(q, c)
		if !ok {
			continue
		}
		apps = append(apps, applicable{c, o})
		switch {
		case o.residual:
			anyR = true
		case o.effect == fhirconsent.Deny:
			if !anyDeny || c.DateTime.After(lastDeny) {
				lastDeny = c.DateTime
			}
			anyDeny = true
		default:
			if !anyPermit || c.DateTime.After(lastPermit) {
				lastPermit = c.DateTime
			}
			anyPermit = true
		}
	}
	var res Result
	switch {
	case !anyDeny && !anyPermit && !anyR:
		return res
	case anyDeny && (rule != MostRecent || !anyPermit || !lastPermit.After(lastDeny)):
		res.Decision = Deny
	case anyPermit:
		res.Decision = Permit
	default:
		res.Decision = NoConsent
	}
	// standing reports whether an applicable consent is part of the answer.
	standing := func(a *applicable) bool {
		switch {
		case a.o.residual:
			return res.Decision != Deny && (rule != MostRecent || !anyPermit || !a.c.DateTime.Before(lastPermit))
		case a.o.effect == fhirconsent.Deny:
			return res.Decision == Deny && (rule != MostRecent || a.c.DateTime.Equal(lastDeny))
		default:
			return res.Decision == Permit && (rule != MostRecent || !anyDeny || a.c.DateTime.After(lastDeny))
		}
	}
	for i := range apps {
		a := &apps[i]
		if !standing(a) {
			continue
		}
		if a.o.residual {
			// Residual labels are obligations, not the decision: they name
			// no provision that decided.
			res.RedactLabels = joinCodings(res.RedactLabels, a.o.redact)
			if res.Decision == NoConsent {
				res.Consents = join(res.Consents, a.c.RefSlice())
			}
			continue
		}
		res.Consents = join(res.Consents, a.c.RefSlice())
		res.Provisions = join(res.Provisions, a.o.provs)
		if res.Decision == Permit {
			res.RedactLabels = joinCodings(res.RedactLabels, a.o.redact)
			res.NamesSubject = res.NamesSubject || a.o.named&namesSubjectBit != 0
			res.NamesRecipient = res.NamesRecipient || a.o.named != 0
		}
	}
	return res
}

// evalConsent evaluates one consent; ok is false when it does not apply.
// A root deny provision that a search matches but for its security labels
// (matchResidual) permits with those labels to redact: the consent denies
// only the labelled data, which the caller withholds from the results.
func evalConsent(q *Query, c *fhirconsent.Consent) (outcome, bool) {
	if !c.Active() || q.patient == "" || c.Patient != q.patient {
		return outcome{}, false
	}
	switch c.Scope {
	case fhirconsent.ScopeResearch:
		if !q.research {
			return outcome{}, false
		}
	case fhirconsent.ScopeTreatment, fhirconsent.ScopeAdvanceDirective:
		return outcome{}, false
	}
	if !c.Validity.Contains(q.time) {
		return outcome{}, false
	}
	switch match(q, c.Root) {
	case matchNo:
		return outcome{}, false
	case matchResidual:
		return outcome{effect: fhirconsent.Deny, provs: c.Root.RefSlice(), redact: c.Root.RedactLabels(), residual: true}, true
	}
	eff, provs, redact, named := decide(q, c.Root)
	return outcome{effect: eff, provs: provs, redact: redact, named: named}, true
}

// decide returns the decision of a matching provision p: that of its
// deepest matching descendants (deny wins among siblings), else its own.
// named says whom p or a deciding descendant names as recipient.
func decide(q *Query, p *fhirconsent.Provision) (fhirconsent.Effect, []string, []fhirconsent.Coding, names) {
	var (
		eff    fhirconsent.Effect
		provs  []string
		redact []fhirconsent.Coding
		resid  []fhirconsent.Coding
		named  names
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
		case eff == 0 || (e == fhirconsent.Deny && eff == fhirconsent.Permit):
			eff, provs, redact, named = e, ps, rs, nm
		case e == eff:
			provs = join(provs, ps)
			redact = joinCodings(redact, rs)
			named |= nm
		}
	}
	if eff == 0 {
		eff, provs = p.Effect, p.RefSlice()
	}
	if eff == fhirconsent.Deny {
		return eff, provs, nil, 0
	}
	return eff, provs, joinCodings(redact, resid), named | namedBy(q, p)
}

// namedBy says whether one of p's recipient actors is the requesting
// subject itself (by the subject's reference or one of its own
// identifiers) or the subject's organization (by its reference or one of
// its identifiers). A recipient given by role alone, or "any recipient",
// names no one.
func namedBy(q *Query, p *fhirconsent.Provision) names {
	var n names
	for i := range p.Actors {
		a := &p.Actors[i]
		if a.Target != fhirconsent.TargetRecipient || a.AnyRecipient {
			continue
		}
		if a.Reference != "" {
			if a.Reference == q.subjectID {
				n |= namesSubjectBit
			}
			if q.subjectOrg != "" && a.Reference == q.subjectOrg {
				n |= namesOrgBit
			}
		}
		if a.Identifier.Value != "" {
			sys := strings.TrimRight(a.Identifier.System, "/")
			for i, id := range q.idents {
				if id.Value == a.Identifier.Value && fhirconsent.SameSystem(sys, id.System) {
					if i < q.ownIdents {
						n |= namesSubjectBit
					} else {
						n |= namesOrgBit
					}
				}
			}
		}
	}
	return n
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

func joinCodings(a, b []fhirconsent.Coding) []fhirconsent.Coding { return join(a, b) }
