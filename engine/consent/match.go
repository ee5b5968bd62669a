package consent

import (
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

type matchKind uint8

const (
	matchNo matchKind = iota
	matchYes
	// matchResidual: a deny provision whose criteria all match except its
	// security labels, for a request that has none to compare (a search).
	matchResidual
)

// match reports whether every criterion of p matches q.
func match(q *Query, p *fhirconsent.Provision) matchKind {
	if !p.Period.IsZero() && !p.Period.Contains(q.time) {
		return matchNo
	}
	if !p.DataPeriod.IsZero() && (q.date.IsZero() || !p.DataPeriod.Contains(q.date)) {
		return matchNo
	}
	if len(p.Actors) > 0 && !matchActors(q, p.Actors) {
		return matchNo
	}
	if p.HasActions && p.Actions&q.action == 0 {
		return matchNo
	}
	if len(p.Purposes) > 0 && !matchPurpose(q, p.Purposes) {
		return matchNo
	}
	if len(p.Classes) > 0 && !matchClass(q, p.Classes) {
		return matchNo
	}
	if len(p.Codes) > 0 && !matchCodes(q.codes, p.Codes) {
		return matchNo
	}
	if len(p.DocumentTypes) > 0 && !matchCodes(q.codes, p.DocumentTypes) {
		return matchNo
	}
	if len(p.Data) > 0 && !matchData(q, p.Data) {
		return matchNo
	}
	if p.Expression && p.Effect != fhirconsent.Deny {
		return matchNo
	}
	if len(p.Labels) > 0 && !matchLabels(q, p) {
		if q.residual && p.Effect == fhirconsent.Deny {
			return matchResidual
		}
		return matchNo
	}
	return matchYes
}

func matchActors(q *Query, actors []fhirconsent.Actor) bool {
	for i := range actors {
		if matchActor(q, &actors[i]) {
			return true
		}
	}
	return false
}

func matchActor(q *Query, a *fhirconsent.Actor) bool {
	switch a.Target {
	case fhirconsent.TargetCustodian:
		return a.Reference == "" && a.Identifier.Value == "" || a.Reference != "" && a.Reference == q.org
	case fhirconsent.TargetAuthor:
		return a.Reference == "" && a.Identifier.Value == "" || a.Reference != "" && a.Reference == q.author
	}
	if a.AnyRecipient {
		return true
	}
	if a.Reference != "" {
		return a.Reference == q.subjectID || (q.subjectOrg != "" && a.Reference == q.subjectOrg)
	}
	if a.Identifier.Value != "" {
		for _, id := range q.idents {
			if a.Identifier.Matches(id) {
				return true
			}
		}
		return false
	}
	// An actor given by role alone: a role of the subject.
	for _, r := range a.Role {
		for _, have := range q.roles {
			if have == r.Code || (r.System != "" && have == r.System+"|"+r.Code) {
				return true
			}
		}
		switch r.Code {
		case "PAT":
			if q.kind == "patient" {
				return true
			}
		case "PROV":
			if q.kind == "practitioner" {
				return true
			}
		}
	}
	return false
}

func matchPurpose(q *Query, purposes []fhirconsent.Coding) bool {
	for _, want := range purposes {
		for _, have := range q.purposes {
			if want.Code == have {
				return true
			}
		}
	}
	return false
}

func matchClass(q *Query, classes []fhirconsent.Class) bool {
	for _, c := range classes {
		if c.ResourceType != "" && c.ResourceType == q.resourceType {
			return true
		}
		if c.Profile != "" {
			for _, p := range q.profiles {
				if p == c.Profile {
					return true
				}
			}
		}
	}
	return false
}

func matchCodes(have, want []fhirconsent.Coding) bool {
	for _, w := range want {
		for _, h := range have {
			if w.Code == h.Code && fhirconsent.SameSystem(w.System, h.System) {
				return true
			}
		}
	}
	return false
}

func matchData(q *Query, data []fhirconsent.DataRef) bool {
	for _, d := range data {
		switch d.Meaning {
		case fhirconsent.MeaningAuthoredBy:
			if q.author != "" && d.Reference == q.author {
				return true
			}
		default:
			if q.resourceRef != "" && d.Reference == q.resourceRef {
				return true
			}
		}
	}
	return false
}

// matchLabels: any label criterion matches a label of the resource. A
// confidentiality criterion compares levels: a deny covers its level and
// above, a permit its level and below.
func matchLabels(q *Query, p *fhirconsent.Provision) bool {
	for _, l := range p.Labels {
		if l.Level > 0 {
			if q.conf == 0 {
				continue
			}
			if p.Effect == fhirconsent.Deny && q.conf >= l.Level || p.Effect == fhirconsent.Permit && q.conf <= l.Level {
				return true
			}
			continue
		}
		for _, h := range q.labels {
			if h.Code == l.Canonical.Code && fhirconsent.SameSystem(l.Canonical.System, h.System) {
				return true
			}
		}
	}
	return false
}
