package consent

import (
	"fmt"
	"slices"
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
	// RestrictsRecipient is set on a Deny when a deciding deny provision
	// (or one of its ancestors) names the subject itself or the subject's
	// organization as a recipient: a restriction aimed at this recipient,
	// not a general opt-out of sharing.
	RestrictsRecipient bool
	// Deciding is the consent that decided a Permit or a Deny (nil for
	// NoConsent): of the consents that stand, the most recent (the first
	// of those given the same time), and DecidingProvision its first
	// deciding provision. When several consents stand, policies that read
	// it see the most recent one only.
	Deciding          *fhirconsent.Consent
	DecidingProvision *fhirconsent.Provision
}

// DecidingPurposes returns the purpose of use codes of the deciding
// provision and of its ancestors (the purposes it was given for; a child
// provision applies only within its parent's criteria), without
// duplicates, in the order of the path from the root. It is nil without a
// deciding provision.
func (r *Result) DecidingPurposes() []string {
	if r.Deciding == nil || r.DecidingProvision == nil {
		return nil
	}
	var out []string
	var walk func(p *fhirconsent.Provision) bool
	walk = func(p *fhirconsent.Provision) bool {
		found := p == r.DecidingProvision
		for _, ch := range p.Children {
			if found {
				break
			}
			found = walk(ch)
		}
		if found {
			// Collected on the way back: reversed below.
			for i := len(p.Purposes) - 1; i >= 0; i-- {
				out = append(out, p.Purposes[i].Code)
			}
		}
		return found
	}
	walk(r.Deciding.Root)
	slices.Reverse(out)
	dedup := out[:0]
	for _, c := range out {
		if c != "" && !slices.Contains(dedup, c) {
			dedup = append(dedup, c)
		}
	}
	return dedup
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
		case o.effect == fhirconsent.Permit:
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
		case a.o.effect == fhirconsent.Permit:
			return res.Decision == Permit && (rule != MostRecent || !anyDeny || a.c.DateTime.After(lastDeny))
		}
		return false
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
		if res.Deciding == nil || a.c.DateTime.After(res.Deciding.DateTime) {
			res.Deciding = a.c
			res.DecidingProvision = nil
			if len(a.o.provs) > 0 {
				res.DecidingProvision = findProvision(a.c.Root, a.o.provs[0])
			}
		}
		if res.Decision == Deny {
			res.RestrictsRecipient = res.RestrictsRecipient || a.o.named != 0
		}
		if res.Decision == Permit {
			res.RedactLabels = joinCodings(res.RedactLabels, a.o.redact)
			res.NamesSubject = res.NamesSubject || a.o.named&namesSubjectBit != 0
			res.NamesRecipient = res.NamesRecipient || a.o.named != 0
		}
	}
	return res
}

// evalConsent evaluates one consent; ok is false when it does not apply.
// Only a permit provision that applies makes the outcome a permit. A deny
// provision that a search matches but for its security labels
// (matchResidual) decides nothing: when nothing else in the consent
// decides, the consent's outcome is residual, its labels to withhold.
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
	v := decide(q, c.Root)
	switch v.effect {
	case fhirconsent.Permit, fhirconsent.Deny:
		return outcome{effect: v.effect, provs: v.provs, redact: v.redact, named: v.named}, true
	}
	// Nothing with an effect applies (a root without a type of its own
	// and no typed descendant that matches).
	if len(v.resid) > 0 {
		return outcome{effect: fhirconsent.Deny, redact: v.resid, residual: true}, true
	}
	return outcome{}, false
}

// verdict is what a matching provision decides.
type verdict struct {
	effect fhirconsent.Effect // 0: nothing with an effect applies
	provs  []string
	redact []fhirconsent.Coding // permit: labels to withhold
	named  names                // permit: recipients it names
	resid  []fhirconsent.Coding // no effect: residual labels found below
}

// decide returns the decision of a matching provision p: that of its
// deepest matching descendants with an effect (deny wins among siblings),
// else its own. A provision without an effect (see [fhirconsent.Effect])
// decides nothing: then the verdict has no effect and carries the labels
// of residual denies below it.
func decide(q *Query, p *fhirconsent.Provision) verdict {
	var (
		best  verdict
		resid []fhirconsent.Coding
	)
	for _, ch := range p.Children {
		switch match(q, ch) {
		case matchNo:
			continue
		case matchResidual:
			resid = joinCodings(resid, ch.RedactLabels())
			continue
		}
		v := decide(q, ch)
		switch {
		case v.effect != fhirconsent.Permit && v.effect != fhirconsent.Deny:
			resid = joinCodings(resid, v.resid)
		case best.effect == 0 || (v.effect == fhirconsent.Deny && best.effect == fhirconsent.Permit):
			best = v
		case v.effect == best.effect:
			best.provs = join(best.provs, v.provs)
			best.redact = joinCodings(best.redact, v.redact)
			best.named |= v.named
		}
	}
	if best.effect == 0 {
		if p.Effect != fhirconsent.Permit && p.Effect != fhirconsent.Deny {
			return verdict{resid: resid}
		}
		best = verdict{effect: p.Effect, provs: p.RefSlice()}
	}
	if best.effect == fhirconsent.Deny {
		return verdict{effect: fhirconsent.Deny, provs: best.provs, named: best.named | namedBy(q, p)}
	}
	best.redact = joinCodings(best.redact, resid)
	best.named |= namedBy(q, p)
	return best
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
			for i, id := range q.idents {
				if a.Identifier.Matches(id) {
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

// findProvision returns the provision of the tree at root whose reference
// ("Consent/<id>#<path>") is ref, or nil.
func findProvision(root *fhirconsent.Provision, ref string) *fhirconsent.Provision {
	if rs := root.RefSlice(); len(rs) > 0 && rs[0] == ref {
		return root
	}
	for _, ch := range root.Children {
		if p := findProvision(ch, ref); p != nil {
			return p
		}
	}
	return nil
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
