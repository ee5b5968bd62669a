package console

import (
	"fmt"
	"strings"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// consentWords is a FHIR Consent (R4 or R5) said in plain words, for a
// person reading the patient view. It describes what the resource says;
// how a provision tree decides a request is the engine's (engine/consent).
type consentWords struct {
	Headline   string
	Provisions []provisionWords
}

type provisionWords struct {
	Depth int
	Text  string
}

// describeConsent words a stored consent.
func describeConsent(sc *chaperonev1.StoredConsent) consentWords {
	var out consentWords
	m := map[string]any{}
	if sc.GetConsent() != nil {
		m = sc.GetConsent().AsMap()
	}
	state := "active"
	switch {
	case sc.GetRevoked():
		state = "revoked"
	case sc.GetStatus() != "" && sc.GetStatus() != "active":
		state = sc.GetStatus()
	}
	parts := []string{fmt.Sprintf("%s consent (FHIR %s, status %s)", capitalize(state), sc.GetFhirVersion(), str(m["status"]))}
	if d := firstNonEmpty(str(m["dateTime"]), str(m["date"])); d != "" {
		parts = append(parts, "dated "+d)
	}
	if p, ok := m["period"].(map[string]any); ok {
		if s := period(p); s != "" {
			parts = append(parts, "valid "+s)
		}
	}
	if sc := codeable(m["scope"]); sc != "" {
		parts = append(parts, "scope "+sc)
	}
	var rules []string
	for _, r := range list(m["policyRule"]) {
		rules = append(rules, codeable(r))
	}
	if s := codeable(m["policyRule"]); s != "" {
		rules = append(rules, s)
	}
	if len(rules) > 0 {
		parts = append(parts, "policy rule "+strings.Join(rules, ", "))
	}
	out.Headline = strings.Join(parts, "; ")

	// R4: one root provision object, type permit|deny. R5: decision at the
	// root and a list of provisions under it.
	switch p := m["provision"].(type) {
	case map[string]any:
		out.walk(p, str(p["type"]), 0)
	case []any:
		root := str(m["decision"])
		if root == "" {
			root = "unstated"
		}
		out.Provisions = append(out.Provisions, provisionWords{Text: capitalize(verb(root)) + " by default (decision " + root + ")"})
		for _, x := range p {
			if pm, ok := x.(map[string]any); ok {
				out.walk(pm, opposite(root), 1)
			}
		}
	default:
		if d := str(m["decision"]); d != "" {
			out.Provisions = append(out.Provisions, provisionWords{Text: capitalize(verb(d)) + " everything, without conditions"})
		}
	}
	return out
}

// walk words provision p, whose type is typ (given, or implied by its
// parent), and its nested provisions.
func (cw *consentWords) walk(p map[string]any, typ string, depth int) {
	if depth > 8 {
		return
	}
	if t := str(p["type"]); t != "" {
		typ = t
	}
	var conds []string
	for _, a := range list(p["actor"]) {
		am, _ := a.(map[string]any)
		who := reference(am["reference"])
		if role := codeable(am["role"]); role != "" {
			who = strings.TrimSpace(who + " as " + role)
		}
		if who != "" {
			conds = append(conds, "for "+who)
		}
	}
	addCodes := func(key, what string) {
		var cs []string
		for _, x := range list(p[key]) {
			if s := firstNonEmpty(codeable(x), coding(x)); s != "" {
				cs = append(cs, s)
			}
		}
		if len(cs) > 0 {
			conds = append(conds, what+" "+strings.Join(cs, ", "))
		}
	}
	addCodes("action", "actions")
	addCodes("purpose", "for the purposes")
	addCodes("securityLabel", "on data labelled")
	addCodes("class", "on resource types")
	addCodes("resourceType", "on resource types")
	addCodes("documentType", "on document types")
	addCodes("code", "on codes")
	if pm, ok := p["period"].(map[string]any); ok {
		if s := period(pm); s != "" {
			conds = append(conds, "valid "+s)
		}
	}
	if pm, ok := p["dataPeriod"].(map[string]any); ok {
		if s := period(pm); s != "" {
			conds = append(conds, "on data dated "+s)
		}
	}
	for _, x := range list(p["data"]) {
		dm, _ := x.(map[string]any)
		if ref := reference(dm["reference"]); ref != "" {
			conds = append(conds, "on "+ref+" ("+firstNonEmpty(str(dm["meaning"]), "instance")+")")
		}
	}
	text := capitalize(verb(typ))
	if len(conds) == 0 {
		text += " (no further conditions)"
	} else {
		text += " " + strings.Join(conds, "; ")
	}
	cw.Provisions = append(cw.Provisions, provisionWords{Depth: depth, Text: text})
	for _, x := range list(p["provision"]) {
		if pm, ok := x.(map[string]any); ok {
			cw.walk(pm, opposite(typ), depth+1)
		}
	}
}

func verb(typ string) string {
	switch typ {
	case "permit":
		return "permits"
	case "deny":
		return "denies"
	}
	return "applies (no type stated)"
}

func opposite(typ string) string {
	switch typ {
	case "permit":
		return "deny"
	case "deny":
		return "permit"
	}
	return ""
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// coding words a Coding: its display, else system|code.
func coding(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	if d := str(m["display"]); d != "" {
		return d + " (" + str(m["code"]) + ")"
	}
	return str(m["code"])
}

// codeable words a CodeableConcept (its text, else its codings).
func codeable(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	if t := str(m["text"]); t != "" {
		return t
	}
	var cs []string
	for _, c := range list(m["coding"]) {
		if s := coding(c); s != "" {
			cs = append(cs, s)
		}
	}
	if len(cs) == 0 {
		return coding(m) // a bare Coding
	}
	return strings.Join(cs, " / ")
}

func reference(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	return firstNonEmpty(str(m["reference"]), str(m["display"]))
}

func period(m map[string]any) string {
	s, e := str(m["start"]), str(m["end"])
	switch {
	case s != "" && e != "":
		return "from " + s + " until " + e
	case s != "":
		return "from " + s
	case e != "":
		return "until " + e
	}
	return ""
}
