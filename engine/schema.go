package engine

import (
	"github.com/chaperone-pdp/chaperone/fhir"
)

// Kind is the kind of a value the engine gives policies.
type Kind string

// Kinds of values.
const (
	KindString   Kind = "string"
	KindLong     Kind = "long"     // Cedar Long; a JSON integer in Rego
	KindBool     Kind = "bool"     // Cedar Bool; a JSON boolean in Rego
	KindDatetime Kind = "datetime" // Cedar datetime
	KindIPAddr   Kind = "ipaddr"   // Cedar ipaddr
	KindSet      Kind = "set"      // Cedar Set; a JSON array in Rego
	KindRecord   Kind = "record"   // Cedar record; a JSON object in Rego
)

// Type is the type of a value the engine gives policies.
type Type struct {
	Kind  Kind
	Elem  *Type  // the element type of a KindSet
	Attrs []Attr // the attributes of a KindRecord, each always present unless Optional
}

// Attr is one attribute of an entity, of the context or of the Rego input.
type Attr struct {
	Name string
	Type Type
	// Optional attributes are present only when known (Cedar: test them
	// with `has` first).
	Optional bool
	Doc      string
}

// ActionGroup is a Cedar action group and the interactions in it.
type ActionGroup struct {
	Name    string
	Members []string
}

// PolicyModel describes everything the engine gives policies: the Cedar
// entities (principal, resource, action) with their attributes, the Cedar
// context, and the Rego input document. It is the one source of truth the
// Cedar schema ([PolicyModel.CedarSchema]) and the JSON Schema of the Rego
// input ([PolicyModel.InputSchema]) are generated from; the engine's tests
// hold the entities, context and input it builds for requests to it.
type PolicyModel struct {
	// PrincipalType is the Cedar entity type of the principal; its
	// parents are RoleType entities, one per role.
	PrincipalType, RoleType string
	Principal               []Attr
	// ResourceTypes are the Cedar entity types of the resource: the FHIR
	// resource types. Every one has the attributes Resource.
	ResourceTypes []string
	Resource      []Attr
	// Groups are the Cedar action groups; Ungrouped the interactions in
	// no group. Every interaction is an action on Principal and every
	// resource type, with Context.
	Groups    []ActionGroup
	Ungrouped []string
	Context   []Attr
	// Input is the Rego input document.
	Input []Attr
	// Roles, when set, are the only role names a policy may name
	// (RoleType::"<role>"): a bundle's manifest roles.
	Roles []string
}

func str(name, doc string) Attr     { return Attr{Name: name, Type: Type{Kind: KindString}, Doc: doc} }
func boolean(name, doc string) Attr { return Attr{Name: name, Type: Type{Kind: KindBool}, Doc: doc} }
func long(name, doc string) Attr    { return Attr{Name: name, Type: Type{Kind: KindLong}, Doc: doc} }
func strSet(name, doc string) Attr {
	return Attr{Name: name, Type: Type{Kind: KindSet, Elem: &Type{Kind: KindString}}, Doc: doc}
}
func record(name, doc string, attrs ...Attr) Attr {
	return Attr{Name: name, Type: Type{Kind: KindRecord, Attrs: attrs}, Doc: doc}
}
func recordList(name, doc string, attrs ...Attr) Attr {
	return Attr{Name: name, Type: Type{Kind: KindSet, Elem: &Type{Kind: KindRecord, Attrs: attrs}}, Doc: doc}
}

const treatingDoc = "the subject, a practitioner, has a treating relationship (CareTeam, Encounter) with the patient at the decision time"

// NewPolicyModel returns the model of what this engine gives policies.
func NewPolicyModel() *PolicyModel {
	m := &PolicyModel{
		PrincipalType: "Subject",
		RoleType:      "Role",
		ResourceTypes: fhir.ResourceTypes(),
	}
	m.Principal = []Attr{
		str("id", "subject.id, a FHIR reference: Practitioner/p1"),
		str("kind", "subject.kind: practitioner, patient, related-person, device or service"),
		strSet("roles", "subject.roles; also the parents Role::\"<role>\""),
		str("organization", "subject.organization: Organization/<id>, or \"\""),
		str("clientId", "subject.clientId: the client application"),
		str("launchPatient", "subject.launchPatient: Patient/<id> of a SMART launch, or \"\""),
		strSet("scopes", "subject.scopes: the SMART scopes granted to the token"),
		strSet("identifiers", "subject.identifiers as \"system|value\""),
	}
	for _, g := range []string{"access", "correct"} {
		grp := ActionGroup{Name: g}
		for _, i := range fhir.Interactions {
			if actionGroups[string(i)] == g {
				grp.Members = append(grp.Members, string(i))
			}
		}
		m.Groups = append(m.Groups, grp)
	}
	for _, i := range fhir.Interactions {
		if actionGroups[string(i)] == "" {
			m.Ungrouped = append(m.Ungrouped, string(i))
		}
	}
	m.Resource = []Attr{
		str("type", "resource.type, the FHIR resource type (also the entity type)"),
		str("id", "resource.id, or \"\" for a search"),
		str("patient", "resource.patient: Patient/<id> whose compartment the resource is in, or \"\""),
		str("organization", "resource.organization: the owning Organization/<id>, or \"\""),
		str("author", "resource.author: a FHIR reference, or \"\""),
		strSet("labels", "the codes of resource.securityLabels"),
		strSet("securityLabels", "resource.securityLabels as \"system|code\""),
		strSet("codes", "resource.codes as \"system|code\""),
		strSet("categories", "resource.categories as \"system|code\""),
		{Name: "date", Type: Type{Kind: KindDatetime}, Optional: true, Doc: "resource.date, when given"},
	}
	scopes := []Attr{
		boolean("present", "some resource scope was granted"),
		boolean("allows", "the scopes grant the interaction on the resource type"),
		strSet("levels", "the levels (patient, user, system) whose scopes allow it"),
	}
	agreement := []Attr{
		boolean("exists", "the client application has a vendor agreement"),
		boolean("active", "signed, not revoked and not expired at the decision time"),
		boolean("covers", "active, and its purposes and resource types include the request's"),
		str("vendor", "the vendor"),
		str("tier", "the agreement tier"),
		strSet("purposes", "the purposes of use it covers"),
		strSet("resourceTypes", "the resource types it covers"),
	}
	deciding := []Attr{
		str("id", "the id of the consent that decided, or \"\" when none did"),
		str("provision", "the path of its deciding provision, e.g. \"provision.provision[1]\", or \"\""),
		str("scope", "its scope: patient-privacy, research, treatment, adr or unknown; \"\" when none decided"),
		strSet("categories", "its category codings as \"system|code\""),
		strSet("purposes", "the purpose of use codes of the deciding provision and its ancestors"),
	}
	m.Context = []Attr{
		str("purposeOfUse", "purposeOfUse, an HL7 v3 PurposeOfUse code"),
		{Name: "time", Type: Type{Kind: KindDatetime}, Doc: "the decision time at the bundle's timeResolution"},
		long("hour", "the hour of the decision time (0-23) in the tenant's timezone (see localTime)"),
		record("localTime", "the decision time in the tenant's timezone (tenantTimezones[subject.organization], else the manifest's timezone)",
			str("weekday", "monday, tuesday, wednesday, thursday, friday, saturday or sunday"),
			long("hour", "0-23"),
			long("minute", "0-59"),
		),
		str("breakGlassReason", "context.breakGlassReason, or \"\""),
		str("networkZone", "context.networkZone, or \"\""),
		str("deviceTrust", "context.deviceTrust, or \"\""),
		str("phase", "\"request\" (a gateway decides from the URL and token) or \"resource\""),
		str("consent", "the consent decision: PERMIT, DENY or NO_CONSENT"),
		boolean("consentNamesSubject", "the permitting consent names the subject itself as a recipient"),
		boolean("consentNamesRecipient", "the permitting consent names the subject or its organization"),
		boolean("consentRestrictsRecipient", "the denying consent names the subject or its organization"),
		record("decidingConsent", "the consent that decided a PERMIT or DENY (the most recent of those that stand)", deciding...),
		boolean("breakGlassGrant", "an active break-glass grant of the subject for the patient"),
		boolean("treatingRelationship", treatingDoc),
		boolean("sameOrganization", "subject and resource name the same organization"),
		boolean("population", "a search, history or export of a patient-compartment type naming no patient"),
		record("scopes", "the subject's SMART scopes, evaluated in Go", scopes...),
		record("agreement", "the client application's vendor agreement", agreement...),
		{Name: "ip", Type: Type{Kind: KindIPAddr}, Optional: true, Doc: "context.ip, when given"},
	}

	coding := func(name, doc string) Attr {
		return recordList(name, doc, str("system", "code system"), str("code", "code"))
	}
	identifiers := func(name, doc string) Attr {
		return recordList(name, doc, str("system", "identifier system"), str("value", "identifier value"))
	}
	m.Input = []Attr{
		record("subject", "the subject of the request",
			str("id", "a FHIR reference: Practitioner/p1"),
			str("kind", "practitioner, patient, related-person, device or service"),
			identifiers("identifiers", "the subject's business identifiers"),
			strSet("roles", "the subject's roles"),
			str("organization", "Organization/<id>, or \"\""),
			identifiers("organizationIdentifiers", "the organization's business identifiers"),
			strSet("scopes", "the SMART scopes granted to the token"),
			str("clientId", "the client application"),
			str("launchPatient", "Patient/<id> of a SMART launch, or \"\""),
		),
		str("action", "the FHIR interaction: read, vread, search, history, create, update, patch, delete, export or operation"),
		record("resource", "the resource of the request",
			str("type", "the FHIR resource type"),
			str("id", "the resource id, or \"\" for a search"),
			str("patient", "Patient/<id> whose compartment the resource is in, or \"\""),
			coding("securityLabels", "meta.security labels"),
			coding("codes", "the resource's codes"),
			coding("categories", "the resource's categories"),
			str("organization", "the owning Organization/<id>, or \"\""),
			str("author", "a FHIR reference, or \"\""),
			str("date", "RFC 3339 in UTC, or \"\""),
			strSet("profiles", "meta.profile canonical URLs"),
		),
		str("purposeOfUse", "an HL7 v3 PurposeOfUse code"),
		record("context", "the context of the request",
			str("time", "the decision time at the bundle's timeResolution, RFC 3339 in UTC"),
			long("hour", "the hour of the decision time (0-23) in the tenant's timezone (see localTime)"),
			record("localTime", "the decision time in the tenant's timezone (tenantTimezones[subject.organization], else the manifest's timezone)",
				str("weekday", "monday, tuesday, wednesday, thursday, friday, saturday or sunday"),
				long("hour", "0-23"),
				long("minute", "0-59"),
			),
			str("breakGlassReason", "the break-glass justification, or \"\""),
			str("ip", "the source IP address, or \"\""),
			str("networkZone", "the network zone, or \"\""),
			str("deviceTrust", "the device trust, or \"\""),
			str("phase", "\"request\" or \"resource\""),
		),
		record("consent", "the consent layer's answer",
			str("decision", "PERMIT, DENY or NO_CONSENT"),
			boolean("namesSubject", "the permitting consent names the subject itself as a recipient"),
			boolean("namesRecipient", "the permitting consent names the subject or its organization"),
			boolean("restrictsRecipient", "the denying consent names the subject or its organization"),
			record("deciding", "the consent that decided a PERMIT or DENY (the most recent of those that stand)", deciding...),
		),
		record("facts", "facts the engine gathered",
			boolean("breakGlassGrant", "an active break-glass grant of the subject for the patient"),
			boolean("treatingRelationship", treatingDoc),
			boolean("sameOrganization", "subject and resource name the same organization"),
			boolean("population", "a search, history or export of a patient-compartment type naming no patient"),
			record("scopes", "the subject's SMART scopes, evaluated in Go", scopes...),
			record("agreement", "the client application's vendor agreement", agreement...),
		),
	}
	return m
}
