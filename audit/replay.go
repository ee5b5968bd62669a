package audit

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// CheckRequest rebuilds the request a decision record answered, from what
// the record keeps (every request field a decision depends on), for
// replaying recorded traffic against another bundle (`chaperone audit
// export-requests`, `chaperone bundle diff --requests`). context.time is
// the request's own time or, when it stated none, the record's time (when
// the decision was made), so a replay decides at the same instant. It is
// nil for a record that is not a decision.
func (r *Record) CheckRequest() *chaperonev1.CheckRequest {
	if r.Kind != KindDecision {
		return nil
	}
	req := &chaperonev1.CheckRequest{Action: r.Action, PurposeOfUse: r.PurposeOfUse}
	if s := r.Subject; s != nil {
		req.Subject = &chaperonev1.Subject{
			Id:                      s.ID,
			Kind:                    s.Kind,
			Identifiers:             protoIdentifiers(s.Identifiers),
			Roles:                   cloneStrings(s.Roles),
			Organization:            s.Organization,
			OrganizationIdentifiers: protoIdentifiers(s.OrganizationIdentifiers),
			Scopes:                  cloneStrings(s.Scopes),
			ClientId:                s.ClientID,
			LaunchPatient:           s.LaunchPatient,
		}
	}
	if x := r.Resource; x != nil {
		req.Resource = &chaperonev1.Resource{
			Type:           x.Type,
			Id:             x.ID,
			Patient:        x.Patient,
			SecurityLabels: protoCodings(x.Labels),
			Codes:          protoCodings(x.Codes),
			Categories:     protoCodings(x.Categories),
			Organization:   x.Organization,
			Author:         x.Author,
			Profiles:       cloneStrings(x.Profiles),
		}
		if x.Date != nil {
			req.Resource.Date = timestamppb.New(*x.Date)
		}
	}
	ctx := &chaperonev1.Context{Time: timestamppb.New(r.Time)}
	if c := r.Context; c != nil {
		if c.RequestTime != nil {
			ctx.Time = timestamppb.New(*c.RequestTime)
		}
		ctx.BreakGlassReason = c.BreakGlassReason
		ctx.Ip = c.IP
		ctx.NetworkZone = c.NetworkZone
		ctx.DeviceTrust = c.DeviceTrust
		ctx.CorrelationId = c.CorrelationID
		ctx.Phase = c.Phase
	}
	req.Context = ctx
	return req
}

func protoIdentifiers(ids []Identifier) []*chaperonev1.Identifier {
	if len(ids) == 0 {
		return nil
	}
	out := make([]*chaperonev1.Identifier, len(ids))
	for i, x := range ids {
		out[i] = &chaperonev1.Identifier{System: x.System, Value: x.Value}
	}
	return out
}

func protoCodings(cs []Coding) []*chaperonev1.Coding {
	if len(cs) == 0 {
		return nil
	}
	out := make([]*chaperonev1.Coding, len(cs))
	for i, c := range cs {
		out[i] = &chaperonev1.Coding{System: c.System, Code: c.Code}
	}
	return out
}

func cloneStrings(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	return append([]string(nil), ss...)
}
