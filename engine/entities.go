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

func newCedarEntities(f *facts, actions cedar.EntityMap) *cedarEntities {
	req := f.req
	s := req.GetSubject()
	res := req.GetResource()
	ctx := req.GetContext()

	roles := make([]cedar.Value, len(s.GetRoles()))
	parents := make([]cedar.EntityUID, len(s.GetRoles()))
	for i, r := range s.GetRoles() {
		roles[i] = cedar.String(r)
		parents[i] = cedar.NewEntityUID("Role", cedar.String(r))
	}
	principal := cedar.Entity{
		UID:     cedar.NewEntityUID("Subject", cedar.String(s.GetId())),
		Parents: cedar.NewEntityUIDSet(parents...),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"id":           cedar.String(s.GetId()),
			"kind":         cedar.String(s.GetKind()),
			"roles":        cedar.NewSet(roles...),
			"organization": cedar.String(s.GetOrganization()),
			"clientId":     cedar.String(s.GetClientId()),
			"scopes":       stringSet(s.GetScopes()),
			"identifiers":  identifierSet(s.GetIdentifiers()),
		}),
	}

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
		"purposeOfUse":     cedar.String(req.GetPurposeOfUse()),
		"time":             cedar.NewDatetime(f.at),
		"hour":             cedar.Long(f.hour),
		"breakGlassReason": cedar.String(ctx.GetBreakGlassReason()),
		"networkZone":      cedar.String(ctx.GetNetworkZone()),
		"deviceTrust":      cedar.String(ctx.GetDeviceTrust()),
		"consent":          cedar.String(f.consent),
		"breakGlassGrant":  cedar.Boolean(f.grant),
		"scopes": cedar.NewRecord(cedar.RecordMap{
			"present": cedar.Boolean(f.scopes.present),
			"allows":  cedar.Boolean(f.scopes.allows),
			"levels":  stringSet(f.scopes.levels),
		}),
		"agreement": cedar.NewRecord(cedar.RecordMap{
			"exists":        cedar.Boolean(f.agreement.exists),
			"active":        cedar.Boolean(f.agreement.active),
			"covers":        cedar.Boolean(f.agreement.covers),
			"vendor":        cedar.String(f.agreement.vendor),
			"tier":          cedar.String(f.agreement.tier),
			"purposes":      stringSet(f.agreement.purposes),
			"resourceTypes": stringSet(f.agreement.resourceTypes),
		}),
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
