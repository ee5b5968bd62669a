package engine

import (
	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// cedarEntities is the entity store of one request: its principal and
// resource, built once, and the bundle's static action entities.
type cedarEntities struct {
	principal cedar.Entity
	resource  cedar.Entity
	context   cedar.Record
	actions   cedar.EntityMap
}

func (c *cedarEntities) Get(uid cedar.EntityUID) (cedar.Entity, bool) {
	switch uid {
	case c.principal.UID:
		return c.principal, true
	case c.resource.UID:
		return c.resource, true
	}
	e, ok := c.actions[uid]
	return e, ok
}

// constRecords are the context sub-records most requests share, built once
// per bundle: the facts of a client without an agreement and of SMART
// scopes that granted no level. Cedar records hash and copy their map when
// built, so reusing these saves two of the five records of a request.
type constRecords struct {
	noAgreement cedar.Record
	noDeciding  cedar.Record
	scopes      [2][2]cedar.Record // [present][allows], no levels
}

func newConstRecords() *constRecords {
	c := &constRecords{noAgreement: agreementRecord(&agreementFact{}), noDeciding: decidingRecord(&DecidingConsent{})}
	for _, present := range []bool{false, true} {
		for _, allows := range []bool{false, true} {
			c.scopes[b2i(present)][b2i(allows)] = scopesRecord(&scopeFacts{present: present, allows: allows})
		}
	}
	return c
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func agreementRecord(a *agreementFact) cedar.Record {
	return cedar.NewRecord(cedar.RecordMap{
		"exists":        cedar.Boolean(a.exists),
		"active":        cedar.Boolean(a.active),
		"covers":        cedar.Boolean(a.covers),
		"vendor":        cedar.String(a.vendor),
		"tier":          cedar.String(a.tier),
		"purposes":      stringSet(a.purposes),
		"resourceTypes": stringSet(a.resourceTypes),
	})
}

func decidingRecord(d *DecidingConsent) cedar.Record {
	return cedar.NewRecord(cedar.RecordMap{
		"id":         cedar.String(d.ID),
		"provision":  cedar.String(d.Provision),
		"scope":      cedar.String(d.Scope),
		"categories": stringSet(d.Categories),
		"purposes":   stringSet(d.Purposes),
	})
}

func (c *constRecords) deciding(d *DecidingConsent) cedar.Record {
	if d.ID == "" && d.Provision == "" && d.Scope == "" && len(d.Categories) == 0 && len(d.Purposes) == 0 {
		return c.noDeciding
	}
	return decidingRecord(d)
}

func scopesRecord(s *scopeFacts) cedar.Record {
	return cedar.NewRecord(cedar.RecordMap{
		"present": cedar.Boolean(s.present),
		"allows":  cedar.Boolean(s.allows),
		"levels":  stringSet(s.levels),
	})
}

func (c *constRecords) agreement(a *agreementFact) cedar.Record {
	if !a.exists && !a.active && !a.covers && a.vendor == "" && a.tier == "" && len(a.purposes) == 0 && len(a.resourceTypes) == 0 {
		return c.noAgreement
	}
	return agreementRecord(a)
}

func (c *constRecords) scopeFacts(s *scopeFacts) cedar.Record {
	if len(s.levels) == 0 {
		return c.scopes[b2i(s.present)][b2i(s.allows)]
	}
	return scopesRecord(s)
}

func newCedarEntities(f *facts, actions cedar.EntityMap, consts *constRecords, principals *memo[cedar.Entity]) *cedarEntities {
	req := f.req
	res := req.GetResource()
	ctx := req.GetContext()
	principal := principalEntity(req.GetSubject(), principals)

	labels := make([]cedar.Value, len(res.GetSecurityLabels()))
	for i, l := range res.GetSecurityLabels() {
		labels[i] = cedar.String(l.GetCode())
	}
	attrs := cedar.RecordMap{
		"type":           cedar.String(res.GetType()),
		"id":             cedar.String(res.GetId()),
		"patient":        cedar.String(res.GetPatient()),
		"organization":   cedar.String(res.GetOrganization()),
		"author":         cedar.String(res.GetAuthor()),
		"labels":         cedar.NewSet(labels...),
		"securityLabels": codingSet(res.GetSecurityLabels()),
		"codes":          codingSet(res.GetCodes()),
		"categories":     codingSet(res.GetCategories()),
	}
	if res.GetDate() != nil {
		attrs["date"] = cedar.NewDatetime(res.GetDate().AsTime())
	}
	resource := cedar.Entity{
		UID:        cedar.NewEntityUID(cedar.EntityType(res.GetType()), cedar.String(res.GetId())),
		Attributes: cedar.NewRecord(attrs),
	}

	cm := cedar.RecordMap{
		"purposeOfUse":              cedar.String(req.GetPurposeOfUse()),
		"time":                      cedar.NewDatetime(f.at),
		"hour":                      cedar.Long(f.hour),
		"localTime":                 localTimeRecord(f),
		"breakGlassReason":          cedar.String(ctx.GetBreakGlassReason()),
		"networkZone":               cedar.String(ctx.GetNetworkZone()),
		"deviceTrust":               cedar.String(ctx.GetDeviceTrust()),
		"phase":                     cedar.String(phaseOf(req)),
		"consent":                   cedar.String(f.consent),
		"consentNamesSubject":       cedar.Boolean(f.consentNamesSubject),
		"consentNamesRecipient":     cedar.Boolean(f.consentNamesRecipient),
		"consentRestrictsRecipient": cedar.Boolean(f.consentRestrictsRecipient),
		"decidingConsent":           consts.deciding(&f.deciding),
		"breakGlassGrant":           cedar.Boolean(f.grant),
		"treatingRelationship":      cedar.Boolean(f.treating),
		"sameOrganization":          cedar.Boolean(f.sameOrganization),
		"population":                cedar.Boolean(f.population),
		"scopes":                    consts.scopeFacts(&f.scopes),
		"agreement":                 consts.agreement(&f.agreement),
	}
	if ip, err := types.ParseIPAddr(ctx.GetIp()); err == nil && ctx.GetIp() != "" {
		cm["ip"] = ip
	}
	return &cedarEntities{
		principal: principal,
		resource:  resource,
		context:   cedar.NewRecord(cm),
		actions:   actions,
	}
}

// principalEntity is the subject as a Cedar entity, from principals when
// it was built for the same subject before (principals may be nil).
func principalEntity(s *chaperonev1.Subject, principals *memo[cedar.Entity]) cedar.Entity {
	if principals == nil {
		return newPrincipal(s)
	}
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	key := appendSubjectKey((*bp)[:0], s)
	*bp = key
	if e, ok := principals.get(key); ok {
		return e
	}
	e := newPrincipal(s)
	principals.put(key, e)
	return e
}

func newPrincipal(s *chaperonev1.Subject) cedar.Entity {
	roles := make([]cedar.Value, len(s.GetRoles()))
	parents := make([]cedar.EntityUID, len(s.GetRoles()))
	for i, r := range s.GetRoles() {
		roles[i] = cedar.String(r)
		parents[i] = cedar.NewEntityUID("Role", cedar.String(r))
	}
	return cedar.Entity{
		UID:     cedar.NewEntityUID("Subject", cedar.String(s.GetId())),
		Parents: cedar.NewEntityUIDSet(parents...),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"id":            cedar.String(s.GetId()),
			"kind":          cedar.String(s.GetKind()),
			"roles":         cedar.NewSet(roles...),
			"organization":  cedar.String(s.GetOrganization()),
			"clientId":      cedar.String(s.GetClientId()),
			"launchPatient": cedar.String(s.GetLaunchPatient()),
			"scopes":        stringSet(s.GetScopes()),
			"identifiers":   identifierSet(s.GetIdentifiers()),
		}),
	}
}

func stringSet(ss []string) cedar.Set {
	vs := make([]cedar.Value, len(ss))
	for i, s := range ss {
		vs[i] = cedar.String(s)
	}
	return cedar.NewSet(vs...)
}

func codingSet(cs []*chaperonev1.Coding) cedar.Set {
	vs := make([]cedar.Value, len(cs))
	for i, c := range cs {
		vs[i] = cedar.String(c.GetSystem() + "|" + c.GetCode())
	}
	return cedar.NewSet(vs...)
}

func identifierSet(ids []*chaperonev1.Identifier) cedar.Set {
	vs := make([]cedar.Value, len(ids))
	for i, id := range ids {
		vs[i] = cedar.String(id.GetSystem() + "|" + id.GetValue())
	}
	return cedar.NewSet(vs...)
}

func localTimeRecord(f *facts) cedar.Record {
	return cedar.NewRecord(cedar.RecordMap{
		"weekday": cedar.String(f.weekday),
		"hour":    cedar.Long(f.hour),
		"minute":  cedar.Long(f.minute),
	})
}
