package fhirconsent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// ParseError is a Consent resource that cannot be read: Path names the bad
// element in FHIRPath form (e.g. "provision.actor[0].reference"; "" for the
// document as a whole) and Msg says what is wrong.
type ParseError struct {
	Path string
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func perr(path, format string, args ...any) *ParseError {
	return &ParseError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// maxDepth bounds the nesting of provisions.
const maxDepth = 32

// Parse reads one FHIR Consent resource (R4 or R5) and compiles it. The
// FHIR version is detected from the elements used (R5: subject, decision,
// period, regulatoryBasis, controller, a list of provisions, ...; R4:
// patient, scope, policyRule, dateTime, organization, one root provision,
// ...). Unknown elements are ignored; an element of the wrong type, a
// missing required element or an invalid code is a [*ParseError].
func Parse(data []byte) (*Consent, error) {
	v, err := decodeOne(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, perr("", "want a JSON object, got %s", jsonType(v))
	}
	return compileConsent(m, bytes.Clone(data))
}

// ParseMany reads FHIR Consent resources from a single resource, a FHIR
// Bundle (entries whose resource is not a Consent are skipped) or NDJSON
// (one resource or Bundle per line). A bad resource in a Bundle is a
// [*ParseError] whose path starts with "entry[i].resource"; a bad line of
// NDJSON is wrapped with its line number.
func ParseMany(data []byte) ([]*Consent, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []*Consent
	line := 1
	var prev int64
	for n := 0; ; n++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return nil, perr("", "no resource")
			}
			return out, nil
		}
		line += bytes.Count(data[prev:dec.InputOffset()], []byte("\n"))
		prev = dec.InputOffset()
		if err != nil {
			return nil, wrapLine(n, line, syntaxError(err))
		}
		cs, err := parseResourceOrBundle(raw)
		if err != nil {
			return nil, wrapLine(n, line, err)
		}
		out = append(out, cs...)
		if n == 0 && !moreData(data[dec.InputOffset():]) {
			return out, nil
		}
	}
}

func wrapLine(n, line int, err error) error {
	if n == 0 && line <= 1 {
		return err
	}
	return fmt.Errorf("line %d: %w", line, err)
}

func moreData(rest []byte) bool { return len(bytes.TrimSpace(rest)) > 0 }

func parseResourceOrBundle(raw json.RawMessage) ([]*Consent, error) {
	var head struct {
		ResourceType any               `json:"resourceType"`
		Entry        []json.RawMessage `json:"entry"`
	}
	// A type error here (e.g. entry not a list) is reported by the full parse below.
	if err := json.Unmarshal(raw, &head); err != nil || head.ResourceType != "Bundle" {
		c, err := Parse(raw)
		if err != nil {
			return nil, err
		}
		return []*Consent{c}, nil
	}
	var out []*Consent
	for i, e := range head.Entry {
		var entry struct {
			Resource json.RawMessage `json:"resource"`
		}
		if err := json.Unmarshal(e, &entry); err != nil {
			return nil, perr(fmt.Sprintf("entry[%d]", i), "want an object with a resource")
		}
		if len(entry.Resource) == 0 {
			continue
		}
		var rt struct {
			ResourceType any `json:"resourceType"`
		}
		_ = json.Unmarshal(entry.Resource, &rt)
		if rt.ResourceType != "Consent" {
			continue
		}
		c, err := Parse(entry.Resource)
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				p := fmt.Sprintf("entry[%d].resource", i)
				if pe.Path != "" {
					p += "." + pe.Path
				}
				return nil, &ParseError{Path: p, Msg: pe.Msg}
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func decodeOne(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, perr("", "empty document")
		}
		return nil, syntaxError(err)
	}
	if moreData(data[dec.InputOffset():]) {
		return nil, perr("", "invalid JSON: data after the resource")
	}
	return v, nil
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return perr("", "invalid JSON at offset %d: %v", se.Offset, se)
	}
	return perr("", "invalid JSON: %v", err)
}

func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// node is a JSON object at a path.
type node struct {
	path string
	m    map[string]any
}

func (n node) at(key string) string {
	if n.path == "" {
		return key
	}
	return n.path + "." + key
}

func (n node) has(key string) bool {
	v, ok := n.m[key]
	return ok && v != nil
}

func (n node) str(key string) (string, bool, error) {
	v, ok := n.m[key]
	if !ok || v == nil {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, perr(n.at(key), "want a string, got %s", jsonType(v))
	}
	return s, true, nil
}

func (n node) obj(key string) (node, bool, error) {
	v, ok := n.m[key]
	if !ok || v == nil {
		return node{}, false, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return node{}, false, perr(n.at(key), "want an object, got %s", jsonType(v))
	}
	return node{path: n.at(key), m: m}, true, nil
}

// objs reads a list of objects; each element's path is key[i].
func (n node) objs(key string) ([]node, error) {
	v, ok := n.m[key]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, perr(n.at(key), "want a list, got %s", jsonType(v))
	}
	out := make([]node, 0, len(l))
	for i, e := range l {
		p := fmt.Sprintf("%s[%d]", n.at(key), i)
		m, ok := e.(map[string]any)
		if !ok {
			return nil, perr(p, "want an object, got %s", jsonType(e))
		}
		out = append(out, node{path: p, m: m})
	}
	return out, nil
}

func (n node) coding() (Coding, error) {
	sys, _, err := n.str("system")
	if err != nil {
		return Coding{}, err
	}
	code, ok, err := n.str("code")
	if err != nil {
		return Coding{}, err
	}
	if !ok || code == "" {
		return Coding{}, perr(n.at("code"), "required")
	}
	return Coding{System: sys, Code: code}, nil
}

func (n node) codings(key string) ([]Coding, error) {
	ns, err := n.objs(key)
	if err != nil {
		return nil, err
	}
	out := make([]Coding, 0, len(ns))
	for _, e := range ns {
		c, err := e.coding()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// concept reads a CodeableConcept's codings.
func (n node) concept() ([]Coding, error) { return n.codings("coding") }

func (n node) concepts(key string) ([][]Coding, error) {
	ns, err := n.objs(key)
	if err != nil {
		return nil, err
	}
	out := make([][]Coding, 0, len(ns))
	for _, e := range ns {
		cs, err := e.concept()
		if err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	return out, nil
}

func (n node) dateTime(key string) (time.Time, error) {
	s, ok, err := n.str(key)
	if err != nil || !ok {
		return time.Time{}, err
	}
	t, _, ok := fhirTime(s)
	if !ok {
		return time.Time{}, perr(n.at(key), "invalid date/dateTime %q", s)
	}
	return t, nil
}

func (n node) period(key string) (Period, bool, error) {
	o, ok, err := n.obj(key)
	if err != nil || !ok {
		return Period{}, false, err
	}
	var p Period
	if s, ok, err := o.str("start"); err != nil {
		return p, false, err
	} else if ok {
		t, _, ok := fhirTime(s)
		if !ok {
			return p, false, perr(o.at("start"), "invalid dateTime %q", s)
		}
		p.Start = t
	}
	if s, ok, err := o.str("end"); err != nil {
		return p, false, err
	} else if ok {
		_, next, ok := fhirTime(s)
		if !ok {
			return p, false, perr(o.at("end"), "invalid dateTime %q", s)
		}
		p.End = next
	}
	if !p.Start.IsZero() && !p.End.IsZero() && !p.Start.Before(p.End) {
		return p, false, perr(o.at("end"), "before start")
	}
	return p, true, nil
}

// reference reads a Reference: the canonical reference string and the identifier.
func (n node) reference() (string, Identifier, error) {
	ref, _, err := n.str("reference")
	if err != nil {
		return "", Identifier{}, err
	}
	var id Identifier
	if o, ok, err := n.obj("identifier"); err != nil {
		return "", id, err
	} else if ok {
		if id, err = o.identifier(); err != nil {
			return "", id, err
		}
	}
	canon := CanonicalReference(ref)
	if ref != "" && !LiteralReference(canon) {
		return "", id, perr(n.at("reference"), "%q is not a literal reference \"Type/id\" (id of 1 to 64 characters [A-Za-z0-9.-]), the only spelling requests use", ref)
	}
	return canon, id, nil
}

// identifier reads an Identifier, its system canonical.
func (n node) identifier() (Identifier, error) {
	system, _, err := n.str("system")
	if err != nil {
		return Identifier{}, err
	}
	value, _, err := n.str("value")
	if err != nil {
		return Identifier{}, err
	}
	return CanonicalIdentifier(system, value), nil
}

var (
	r5Markers = []string{"subject", "decision", "regulatoryBasis", "controller", "manager", "grantor", "grantee", "policyBasis", "policyText", "date", "period"}
	r4Markers = []string{"patient", "scope", "policyRule", "dateTime", "organization", "performer", "policy"}
	statuses  = []string{"draft", "proposed", "active", "rejected", "inactive", "entered-in-error", "not-done", "unknown"}
)

// detectVersion picks R4 or R5 from the elements present.
func detectVersion(root node) (string, error) {
	var r4, r5 string
	for _, k := range r5Markers {
		if root.has(k) {
			r5 = k
			break
		}
	}
	for _, k := range r4Markers {
		if root.has(k) {
			r4 = k
			break
		}
	}
	switch root.m["provision"].(type) {
	case []any:
		if r5 == "" {
			r5 = "provision"
		}
	case map[string]any:
		if r4 == "" {
			r4 = "provision"
		}
	}
	switch {
	case r4 != "" && r5 != "":
		return "", perr(r4, "R4 element in a resource that also has R5 element %q", r5)
	case r5 != "":
		return R5, nil
	}
	return R4, nil
}

func compileConsent(m map[string]any, raw []byte) (*Consent, error) {
	root := node{m: m}
	rt, _, err := root.str("resourceType")
	if err != nil {
		return nil, err
	}
	if rt != "Consent" {
		return nil, perr("resourceType", "want \"Consent\", got %q", rt)
	}
	version, err := detectVersion(root)
	if err != nil {
		return nil, err
	}
	c := &Consent{FHIRVersion: version, Raw: raw}
	var hasID bool
	if c.ID, hasID, err = root.str("id"); err != nil {
		return nil, err
	}
	if hasID && !ValidID(c.ID) {
		return nil, perr("id", "want a FHIR id: 1 to %d letters, digits, '-' or '.'", MaxIDLength)
	}
	if meta, ok, err := root.obj("meta"); err != nil {
		return nil, err
	} else if ok {
		if c.Version, _, err = meta.str("versionId"); err != nil {
			return nil, err
		}
	}
	status, ok, err := root.str("status")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, perr("status", "required")
	}
	if !slices.Contains(statuses, status) {
		return nil, perr("status", "unknown status %q", status)
	}
	c.Status = status
	ids, err := root.objs("identifier")
	if err != nil {
		return nil, err
	}
	for _, o := range ids {
		id, err := o.identifier()
		if err != nil {
			return nil, err
		}
		c.Identifiers = append(c.Identifiers, id)
	}
	categories, err := root.concepts("category")
	if err != nil {
		return nil, err
	}
	for _, cs := range categories {
		for _, cd := range cs {
			cd.System = CanonicalSystem(cd.System)
			if cd.Code != "" && !slices.Contains(c.Categories, cd) {
				c.Categories = append(c.Categories, cd)
			}
		}
	}
	if version == R4 {
		err = compileR4(root, c, categories)
	} else {
		err = compileR5(root, c, categories)
	}
	if err != nil {
		return nil, err
	}
	c.finalize()
	return c, nil
}

func patientRef(root node, key string) (string, error) {
	o, ok, err := root.obj(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", perr(key, "required")
	}
	ref, _, err := o.reference()
	if err != nil {
		return "", err
	}
	if ref == "" {
		return "", perr(o.at("reference"), "required: the patient's reference, e.g. \"Patient/123\"")
	}
	if !strings.HasPrefix(ref, "Patient/") {
		return "", perr(o.at("reference"), "must be a patient reference \"Patient/id\", not %q", ref)
	}
	return ref, nil
}

func compileR4(root node, c *Consent, categories [][]Coding) error {
	var err error
	if c.Patient, err = patientRef(root, "patient"); err != nil {
		return err
	}
	if c.DateTime, err = root.dateTime("dateTime"); err != nil {
		return err
	}
	var scope []Coding
	if o, ok, err := root.obj("scope"); err != nil {
		return err
	} else if ok {
		if scope, err = o.concept(); err != nil {
			return err
		}
	}
	c.Scope = classify(scope, categories)
	var base Effect // none until the consent says
	if o, ok, err := root.obj("policyRule"); err != nil {
		return err
	} else if ok {
		cs, err := o.concept()
		if err != nil {
			return err
		}
		text, _, err := o.str("text")
		if err != nil {
			return err
		}
		if e := policyEffect(cs, text); e != 0 {
			base = e
		}
	}
	pn, ok, err := root.obj("provision")
	if err != nil {
		return err
	}
	if !ok {
		c.Root = &Provision{Path: "provision", Effect: base}
		return nil
	}
	if c.Validity, _, err = pn.period("period"); err != nil {
		return err
	}
	c.Root, err = compileProvision(pn, 0, base, true)
	return err
}

func compileR5(root node, c *Consent, categories [][]Coding) error {
	var err error
	if c.Patient, err = patientRef(root, "subject"); err != nil {
		return err
	}
	if c.DateTime, err = root.dateTime("date"); err != nil {
		return err
	}
	c.Scope = classify(nil, categories)
	if c.Validity, _, err = root.period("period"); err != nil {
		return err
	}
	var base Effect // none until the consent says
	if d, ok, err := root.str("decision"); err != nil {
		return err
	} else if ok {
		if base = parseEffect(d); base == 0 {
			return perr("decision", "want \"permit\" or \"deny\", got %q", d)
		}
	}
	c.Root = &Provision{Path: "decision", Effect: base}
	ps, err := root.objs("provision")
	if err != nil {
		return err
	}
	for _, pn := range ps {
		p, err := compileProvision(pn, 1, base.Opposite(), false)
		if err != nil {
			return err
		}
		c.Root.Children = append(c.Root.Children, p)
	}
	return nil
}

func parseEffect(s string) Effect {
	switch s {
	case "permit":
		return Permit
	case "deny":
		return Deny
	}
	return 0
}

// policyEffect reads OPTIN/OPTOUT (and OPTINR, OPTOUTE) from an R4 policyRule.
func policyEffect(cs []Coding, text string) Effect {
	for _, c := range cs {
		if e := policyCodeEffect(c.Code); e != 0 {
			return e
		}
	}
	text = strings.NewReplacer("-", "", " ", "", "_", "").Replace(strings.ToUpper(text))
	return policyCodeEffect(text)
}

func policyCodeEffect(code string) Effect {
	switch code {
	case "OPTIN", "OPTINR":
		return Permit
	case "OPTOUT", "OPTOUTE":
		return Deny
	}
	return 0
}

// compileProvision compiles a provision at depth. effect is the effect it
// has when it has no type of its own: for the R4 root the base decision,
// for a nested provision the opposite of its parent's.
func compileProvision(n node, depth int, effect Effect, r4Root bool) (*Provision, error) {
	if depth > maxDepth {
		return nil, perr(n.path, "provisions nested deeper than %d levels", maxDepth)
	}
	p := &Provision{Path: n.path, Depth: depth, Effect: effect}
	if t, ok, err := n.str("type"); err != nil {
		return nil, err
	} else if ok {
		if p.Effect = parseEffect(t); p.Effect == 0 {
			return nil, perr(n.at("type"), "want \"permit\" or \"deny\", got %q", t)
		}
	}
	var err error
	if !r4Root {
		if p.Period, _, err = n.period("period"); err != nil {
			return nil, err
		}
	}
	if p.DataPeriod, _, err = n.period("dataPeriod"); err != nil {
		return nil, err
	}
	actors, err := n.objs("actor")
	if err != nil {
		return nil, err
	}
	for _, an := range actors {
		a, err := compileActor(an)
		if err != nil {
			return nil, err
		}
		p.Actors = append(p.Actors, a)
	}
	if n.has("action") {
		actions, err := n.concepts("action")
		if err != nil {
			return nil, err
		}
		p.HasActions = true
		for _, cs := range actions {
			for _, c := range cs {
				p.ActionCodes = append(p.ActionCodes, c)
				sys := CanonicalSystem(c.System)
				if sys == "" || sys == SystemConsentAction {
					p.Actions |= consentActionBits(c.Code)
				}
			}
		}
	}
	purposes, err := n.codings("purpose")
	if err != nil {
		return nil, err
	}
	for _, c := range purposes {
		p.Purposes = append(p.Purposes, CanonicalCoding(c))
	}
	labels, err := n.codings("securityLabel")
	if err != nil {
		return nil, err
	}
	for _, c := range labels {
		canon := CanonicalCoding(c)
		p.Labels = append(p.Labels, Label{Coding: c, Canonical: canon, Level: ConfidentialityLevel(canon)})
	}
	for _, key := range [...]string{"class", "resourceType"} {
		classes, err := n.codings(key)
		if err != nil {
			return nil, err
		}
		for _, c := range classes {
			p.Classes = append(p.Classes, compileClass(c))
		}
	}
	codes, err := n.concepts("code")
	if err != nil {
		return nil, err
	}
	for _, cs := range codes {
		for _, c := range cs {
			p.Codes = append(p.Codes, CanonicalCoding(c))
		}
	}
	docTypes, err := n.codings("documentType")
	if err != nil {
		return nil, err
	}
	for _, c := range docTypes {
		p.DocumentTypes = append(p.DocumentTypes, CanonicalCoding(c))
	}
	data, err := n.objs("data")
	if err != nil {
		return nil, err
	}
	for _, dn := range data {
		d, err := compileData(dn)
		if err != nil {
			return nil, err
		}
		p.Data = append(p.Data, d)
	}
	if n.has("expression") {
		if _, _, err := n.obj("expression"); err != nil {
			return nil, err
		}
		p.Expression = true
	}
	if p.Effect == Deny {
		p.redact = redactLabels(p.Labels)
	}
	children, err := n.objs("provision")
	if err != nil {
		return nil, err
	}
	for _, cn := range children {
		ch, err := compileProvision(cn, depth+1, p.Effect.Opposite(), false)
		if err != nil {
			return nil, err
		}
		p.Children = append(p.Children, ch)
	}
	return p, nil
}

func compileActor(n node) (Actor, error) {
	var a Actor
	if o, ok, err := n.obj("role"); err != nil {
		return a, err
	} else if ok {
		if a.Role, err = o.concept(); err != nil {
			return a, err
		}
	}
	if o, ok, err := n.obj("reference"); err != nil {
		return a, err
	} else if ok {
		if a.Reference, a.Identifier, err = o.reference(); err != nil {
			return a, err
		}
		if a.Reference == "" && a.Identifier.Value == "" {
			return a, perr(o.path, "needs a reference or an identifier value")
		}
	}
	if a.Reference == "" && a.Identifier.Value == "" && len(a.Role) == 0 {
		return a, perr(n.path, "needs a reference or a role")
	}
	for _, r := range a.Role {
		switch strings.ToUpper(r.Code) {
		case "CST", "CUSTODIAN":
			a.Target = TargetCustodian
		case "AUT", "AUTHOR":
			a.Target = TargetAuthor
		}
	}
	if a.Target == TargetRecipient && a.Reference == "" && a.Identifier.Value == "" {
		for _, r := range a.Role {
			if isRecipientRole(r.Code) {
				a.AnyRecipient = true
			}
		}
	}
	return a, nil
}

// isRecipientRole reports whether a v3-ParticipationType code names the
// receiver of information generically (not a particular kind of party).
func isRecipientRole(code string) bool {
	switch code {
	case "IRCP", "PRCP", "RCV", "REFT", "DEST", "grantee", "GRANTEE", "delegatee", "DELEGATEE":
		return true
	}
	return false
}

func compileClass(c Coding) Class {
	if strings.Contains(c.Code, "/") || strings.HasPrefix(c.Code, "urn:") {
		if strings.HasPrefix(c.Code, "http") || strings.HasPrefix(c.Code, "urn:") {
			return Class{Profile: strings.TrimRight(c.Code, "/")}
		}
		return Class{} // a mime type: not something a request says
	}
	switch CanonicalSystem(c.System) {
	case "", SystemResourceTypes:
		return Class{ResourceType: c.Code}
	}
	return Class{}
}

func compileData(n node) (DataRef, error) {
	var d DataRef
	meaning, ok, err := n.str("meaning")
	if err != nil {
		return d, err
	}
	if !ok {
		return d, perr(n.at("meaning"), "required")
	}
	switch meaning {
	case MeaningInstance, MeaningRelated, MeaningDependents, MeaningAuthoredBy:
		d.Meaning = meaning
	default:
		return d, perr(n.at("meaning"), "want instance, related, dependents or authoredby, got %q", meaning)
	}
	o, ok, err := n.obj("reference")
	if err != nil {
		return d, err
	}
	if !ok {
		return d, perr(n.at("reference"), "required")
	}
	if d.Reference, _, err = o.reference(); err != nil {
		return d, err
	}
	if d.Reference == "" {
		return d, perr(o.at("reference"), "required")
	}
	return d, nil
}

// redactLabels lists the labels a deny provision withholds: each label as
// written, and for a confidentiality level every higher level.
func redactLabels(labels []Label) []Coding {
	var out []Coding
	add := func(c Coding) {
		for _, o := range out {
			if o.Code == c.Code && CanonicalSystem(o.System) == CanonicalSystem(c.System) {
				return
			}
		}
		out = append(out, c)
	}
	for _, l := range labels {
		add(l.Coding)
	}
	for _, l := range labels {
		if l.Level == 0 {
			continue
		}
		sys := l.Coding.System
		if sys == "" {
			sys = SystemConfidentiality
		}
		for lv := l.Level + 1; lv <= LevelV; lv++ {
			add(Coding{System: sys, Code: confidentialityCodes[lv]})
		}
	}
	return out
}

// classify derives the scope from R4 scope and the category codes: a
// consentscope code (in scope or category) wins; otherwise known category
// codes (consentcategorycodes, v3-ActCode consent types, LOINC) decide,
// research before treatment/advance directive before privacy.
func classify(scope []Coding, categories [][]Coding) Scope {
	for _, c := range scope {
		if s := scopeCode(c); s != ScopeUnknown {
			return s
		}
	}
	for _, cs := range categories {
		for _, c := range cs {
			if CanonicalSystem(c.System) == SystemConsentScope {
				if s := scopeCode(c); s != ScopeUnknown {
					return s
				}
			}
		}
	}
	found := ScopeUnknown
	for _, cs := range categories {
		for _, c := range cs {
			s := categoryScope(c)
			if s != ScopeUnknown && (found == ScopeUnknown || scopeRank(s) > scopeRank(found)) {
				found = s
			}
		}
	}
	return found
}

func scopeRank(s Scope) int {
	switch s {
	case ScopeResearch:
		return 3
	case ScopeTreatment, ScopeAdvanceDirective:
		return 2
	case ScopePrivacy:
		return 1
	}
	return 0
}

func scopeCode(c Coding) Scope {
	switch c.Code {
	case "patient-privacy":
		return ScopePrivacy
	case "research":
		return ScopeResearch
	case "treatment":
		return ScopeTreatment
	case "adr":
		return ScopeAdvanceDirective
	}
	return ScopeUnknown
}

func categoryScope(c Coding) Scope {
	switch CanonicalSystem(c.System) {
	case SystemLOINC:
		switch c.Code {
		case "59284-0", "59284-6", "57016-8", "57017-6", "64292-6", "64293-4":
			return ScopePrivacy
		case "75781-5", "59285-3":
			return ScopeAdvanceDirective
		}
	case SystemConsentCategory:
		switch c.Code {
		case "npp", "emrgonly":
			return ScopePrivacy
		case "research", "rsdid", "rsreid":
			return ScopeResearch
		case "acd", "dnr", "polst", "hcd":
			return ScopeAdvanceDirective
		case "treatment":
			return ScopeTreatment
		}
	case SystemActCode:
		switch c.Code {
		case "IDSCL", "INFA", "INFAO", "INFASO", "IRDSCL", "EMRGONLY", "NOPP", "OPTIN", "OPTOUT",
			"OPTINR", "OPTOUTE", "ICOL", "INFCON":
			return ScopePrivacy
		case "RESEARCH", "RSDID", "RSREID":
			return ScopeResearch
		}
	}
	return ScopeUnknown
}

// setRawID returns raw with its "id" set to id.
func setRawID(raw []byte, id string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return raw
	}
	q, _ := json.Marshal(id)
	m["id"] = q
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
