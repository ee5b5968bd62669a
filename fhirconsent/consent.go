package fhirconsent

import (
	"strings"
	"time"
)

// FHIR versions a [Consent] is read as.
const (
	R4 = "R4"
	R5 = "R5"
)

// StatusActive is the only status under which a consent takes part in decisions.
const StatusActive = "active"

// Coding is a code in a code system, as FHIR Coding.
type Coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// Identifier is a value in a namespace, as FHIR Identifier. System is
// canonical: without a trailing slash ([CanonicalIdentifier]).
type Identifier struct {
	System string
	Value  string
}

// CanonicalIdentifier is the identifier with its system's trailing slashes
// removed; the value is kept as given.
func CanonicalIdentifier(system, value string) Identifier {
	return Identifier{System: strings.TrimRight(system, "/"), Value: value}
}

// Matches reports whether id and o are the same identifier: both have a
// value and their systems and values are equal. A missing system matches
// only a missing system, never "any system": the same value in two
// namespaces names two different parties.
func (id Identifier) Matches(o Identifier) bool {
	return id.Value != "" && id.Value == o.Value && id.System == o.System
}

// Effect is what a provision does when it matches: permit or deny.
type Effect uint8

// Effects. The zero Effect is none: a provision without a type of its own
// and nothing to infer one from (an R4 root without type or OPTIN/OPTOUT
// policyRule, an R5 consent without decision, and the untyped provisions
// below it). A provision with no effect never decides by itself.
const (
	Permit Effect = iota + 1
	Deny
)

// Opposite is the other effect; the opposite of none is none.
func (e Effect) Opposite() Effect {
	switch e {
	case Permit:
		return Deny
	case Deny:
		return Permit
	}
	return 0
}

func (e Effect) String() string {
	switch e {
	case Permit:
		return "permit"
	case Deny:
		return "deny"
	}
	return "none"
}

// Scope classifies what a consent is about, from R4 scope or the category
// codes of R4 and R5.
type Scope uint8

// Scopes.
const (
	// ScopeUnknown: no scope or category that says what the consent is for.
	// Evaluation treats it like a privacy consent (see package engine/consent).
	ScopeUnknown Scope = iota
	// ScopePrivacy governs access to and disclosure of data.
	ScopePrivacy
	// ScopeResearch governs use of data for research (purpose HRESCH).
	ScopeResearch
	// ScopeTreatment is consent to treatment; it does not govern data access.
	ScopeTreatment
	// ScopeAdvanceDirective is an advance directive; it does not govern data access.
	ScopeAdvanceDirective
)

func (s Scope) String() string {
	switch s {
	case ScopePrivacy:
		return "patient-privacy"
	case ScopeResearch:
		return "research"
	case ScopeTreatment:
		return "treatment"
	case ScopeAdvanceDirective:
		return "adr"
	}
	return "unknown"
}

// Period is a time range. A zero Start or End is open. End is exclusive: it
// is the first instant after the period, with the precision of the FHIR
// value already applied (an end "2016-01-01" includes all of that day).
type Period struct {
	Start time.Time
	End   time.Time
}

// Contains reports whether t is within the period.
func (p Period) Contains(t time.Time) bool {
	return (p.Start.IsZero() || !t.Before(p.Start)) && (p.End.IsZero() || t.Before(p.End))
}

// IsZero reports whether the period is open at both ends.
func (p Period) IsZero() bool { return p.Start.IsZero() && p.End.IsZero() }

// ConsentRef names one stored consent at one version.
type ConsentRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Consent is a compiled FHIR Consent. It is immutable: every field and
// everything reachable from it must be treated as read-only, because the
// same value is shared by concurrent decisions.
type Consent struct {
	// ID is the resource id ("" when the resource has none and it was not
	// stored yet).
	ID string
	// Version is the version of the stored record (set by the store;
	// meta.versionId before that).
	Version string
	// Patient is the patient reference, "Patient/<id>" (R4 patient, R5 subject).
	Patient string
	// Status is the resource's status code (active, inactive, ...).
	Status string
	// FHIRVersion is R4 or R5.
	FHIRVersion string
	// DateTime is when the consent was given (R4 dateTime, R5 date); zero when absent.
	DateTime time.Time
	// Scope classifies the consent.
	Scope Scope
	// Categories are the codings of the consent's category (R4 and R5), as
	// written but with canonical systems; shared, must not be modified.
	Categories []Coding
	// Validity is when the consent applies (R4 provision.period, R5 period).
	Validity Period
	// Identifiers are the resource's business identifiers.
	Identifiers []Identifier
	// Root is the base rule: in R4 the root provision with its criteria and
	// decision, in R5 the consent's decision with the top-level provisions as
	// its children. Root is never nil.
	Root *Provision
	// Raw is the resource's JSON.
	Raw []byte

	refs []ConsentRef // one element naming this consent, shared
}

// Active reports whether the consent's status is active.
func (c *Consent) Active() bool { return c.Status == StatusActive }

// ProvisionCount is the number of compiled provisions: the root (the R4
// root provision, or the R5 decision) and every provision below it.
func (c *Consent) ProvisionCount() int {
	var count func(p *Provision) int
	count = func(p *Provision) int {
		n := 1
		for _, ch := range p.Children {
			n += count(ch)
		}
		return n
	}
	return count(c.Root)
}

// Ref names the consent.
func (c *Consent) Ref() ConsentRef { return ConsentRef{ID: c.ID, Version: c.Version} }

// RefSlice is a one-element slice holding [Consent.Ref]. It is shared by all
// callers and must not be modified; it lets evaluation report the consent
// that decided without allocating.
func (c *Consent) RefSlice() []ConsentRef { return c.refs }

// ActorTarget says which party of a request an actor criterion is compared with.
type ActorTarget uint8

// Actor targets, chosen from the actor's role.
const (
	// TargetRecipient compares with the subject making the request (its id,
	// organization, identifiers and roles): roles such as IRCP, PRCP, or none.
	TargetRecipient ActorTarget = iota
	// TargetCustodian compares with the resource's organization (role CST).
	TargetCustodian
	// TargetAuthor compares with the resource's author (role AUT).
	TargetAuthor
)

// Actor is a compiled provision.actor.
type Actor struct {
	Target ActorTarget
	// Role is the actor's role codings as written.
	Role []Coding
	// Reference is the canonical reference ("Type/id"), "" when none.
	Reference string
	// Identifier is the reference's identifier, zero when none.
	Identifier Identifier
	// AnyRecipient is set for an actor that has a recipient role and no
	// reference: it matches any subject.
	AnyRecipient bool
}

// Label is a compiled security label criterion.
type Label struct {
	// Coding is the label as written in the consent.
	Coding Coding
	// Canonical is the label with its system canonicalised.
	Canonical Coding
	// Level is the confidentiality level 1 (U) .. 6 (V) for a
	// v3-Confidentiality code, 0 for any other label.
	Level int8
}

// Class is a compiled provision.class (R4) or resourceType (R5) entry.
type Class struct {
	// ResourceType is a FHIR resource type, "" when the class is not one.
	ResourceType string
	// Profile is a profile (StructureDefinition) URL, "" when the class is not one.
	Profile string
}

// Data meanings of provision.data.
const (
	MeaningInstance   = "instance"
	MeaningRelated    = "related"
	MeaningDependents = "dependents"
	MeaningAuthoredBy = "authoredby"
)

// DataRef is a compiled provision.data entry.
type DataRef struct {
	Meaning string
	// Reference is the canonical reference ("Type/id").
	Reference string
}

// Provision is one compiled rule. A provision matches a request when every
// criterion it has matches (an absent criterion matches everything; within
// one criterion's list any entry may match).
type Provision struct {
	// Path is the FHIRPath of the provision in the resource, e.g.
	// "provision.provision[1]" (R4) or "provision[1].provision[0]" (R5);
	// the R5 root is "decision".
	Path string
	// Effect is what the provision decides when it is the deepest match.
	Effect Effect
	// Depth is 0 for the root.
	Depth int

	// Period restricts the time of the request (zero: any time). For the R4
	// root it is the consent's validity and is not repeated here.
	Period Period
	// DataPeriod restricts the resource's date.
	DataPeriod Period
	// Actors: any one must match.
	Actors []Actor
	// Actions is the set of request actions (see ActionBit) the action
	// criterion covers; HasActions says whether there is one.
	Actions    uint16
	HasActions bool
	// ActionCodes are the action codings as written.
	ActionCodes []Coding
	// Purposes are purposeOfUse codings (canonical systems).
	Purposes []Coding
	// Labels are security label criteria.
	Labels []Label
	// Classes are resource types and profiles (R4 class, R5 resourceType).
	Classes []Class
	// Codes are the codings of code (canonical systems): any may be found
	// in the resource's codes or categories.
	Codes []Coding
	// DocumentTypes are the R5 documentType codings (canonical systems).
	DocumentTypes []Coding
	// Data are references to data.
	Data []DataRef
	// Expression is set when the provision has an R5 expression, which is
	// not evaluated: such a provision matches only when it denies (fail closed).
	Expression bool
	// Children are the nested provisions, exceptions to this one.
	Children []*Provision

	refs   []string // one element "Consent/<id>#<path>", shared
	redact []Coding // labels this deny provision withholds (with higher confidentiality levels)
}

// RefSlice is a one-element slice naming the provision,
// "Consent/<id>#<path>". It is shared and must not be modified.
func (p *Provision) RefSlice() []string { return p.refs }

// RedactLabels are the labels whose resources this (deny) provision
// withholds: its security label criteria as written, and for a
// confidentiality code every higher level. Shared; must not be modified.
func (p *Provision) RedactLabels() []Coding { return p.redact }

// HasCriteria reports whether the provision restricts anything.
func (p *Provision) HasCriteria() bool {
	return !p.Period.IsZero() || !p.DataPeriod.IsZero() || len(p.Actors) > 0 || p.HasActions ||
		len(p.Purposes) > 0 || len(p.Labels) > 0 || len(p.Classes) > 0 || len(p.Codes) > 0 ||
		len(p.Data) > 0 || p.Expression
}

// WithID returns a copy of c with the given id and version, as a store
// keeps it. When the id differs from the resource's own, the raw JSON gets
// the new id.
func (c *Consent) WithID(id, version string) *Consent {
	cp := *c
	cp.ID, cp.Version = id, version
	if id != c.ID {
		cp.Raw = setRawID(c.Raw, id)
	}
	cp.Root = cloneTree(c.Root)
	cp.finalize()
	return &cp
}

func cloneTree(p *Provision) *Provision {
	cp := *p
	if len(p.Children) > 0 {
		cp.Children = make([]*Provision, len(p.Children))
		for i, ch := range p.Children {
			cp.Children[i] = cloneTree(ch)
		}
	}
	return &cp
}

// finalize computes the shared reference slices once id and version are known.
func (c *Consent) finalize() {
	c.refs = []ConsentRef{{ID: c.ID, Version: c.Version}}
	prefix := "Consent/" + c.ID + "#"
	var walk func(p *Provision)
	walk = func(p *Provision) {
		p.refs = []string{prefix + p.Path}
		for _, ch := range p.Children {
			walk(ch)
		}
	}
	walk(c.Root)
}
