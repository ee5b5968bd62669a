package proxy

import (
	"encoding/json"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/fhirattr"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// maxBatch is the most CheckRequests of one BatchCheck call.
const maxBatch = 1000

// verdict is the resource-phase decision of one resource: allowed only
// when every decision about it (one per patient whose compartment holds
// it) is an ALLOW; the obligations are the union of theirs.
type verdict struct {
	allow bool
	codes []string
	ob    *chaperonev1.Obligations
}

// subject of the resource phase: the request-phase CheckRequest gives the
// subject, purpose and context; the resource gives the rest.
func resourceRequest(tmpl *chaperonev1.CheckRequest, action string, res *chaperonev1.Resource) *chaperonev1.CheckRequest {
	ctx := proto.CloneOf(tmpl.GetContext())
	if ctx == nil {
		ctx = &chaperonev1.Context{}
	}
	ctx.Phase = PhaseResource
	return &chaperonev1.CheckRequest{
		Subject:      tmpl.GetSubject(),
		Action:       action,
		Resource:     res,
		PurposeOfUse: tmpl.GetPurposeOfUse(),
		Context:      ctx,
	}
}

// decideAll decides resources (decoded JSON objects) in the resource phase
// with one BatchCheck per 1000 decisions. A resource whose attributes
// cannot be read is denied RESOURCE_UNREADABLE without a decision.
func (x *exchange) decideAll(tmpl *chaperonev1.CheckRequest, action string, resources []map[string]any) []verdict {
	out := make([]verdict, len(resources))
	var reqs []*chaperonev1.CheckRequest
	var owner []int
	for i, m := range resources {
		if t, _ := m["resourceType"].(string); unreleasable[t] {
			out[i] = verdict{codes: []string{ReasonUnreadable}}
			continue
		}
		a, err := fhirattr.FromMap(m, x.p.tenant)
		if err != nil {
			out[i] = verdict{codes: []string{ReasonUnreadable}}
			continue
		}
		out[i].allow = true
		for _, r := range a.Resources() {
			reqs = append(reqs, resourceRequest(tmpl, action, r))
			owner = append(owner, i)
		}
	}
	var resps []*chaperonev1.CheckResponse
	for start := 0; start < len(reqs); start += maxBatch {
		end := min(start+maxBatch, len(reqs))
		got := x.p.o.Decider.BatchCheck(x.ctx, reqs[start:end])
		if len(got) != end-start {
			got = make([]*chaperonev1.CheckResponse, end-start) // fail closed
		}
		resps = append(resps, got...)
	}
	x.addIDs(resps...)
	for k, resp := range resps {
		v := &out[owner[k]]
		if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
			v.allow = false
			for _, rs := range resp.GetReasons() {
				if !slices.Contains(v.codes, rs.GetCode()) {
					v.codes = append(v.codes, rs.GetCode())
				}
			}
			if len(v.codes) == 0 {
				v.codes = []string{ReasonDenied}
			}
			continue
		}
		v.ob = merge(v.ob, resp.GetObligations())
	}
	for i := range out {
		if !out[i].allow {
			out[i].ob = nil
		}
	}
	return out
}

// merge is the union of two obligations.
func merge(a, b *chaperonev1.Obligations) *chaperonev1.Obligations {
	if a == nil {
		a = &chaperonev1.Obligations{}
	}
	for _, p := range b.GetMaskPaths() {
		if !slices.Contains(a.MaskPaths, p) {
			a.MaskPaths = append(a.MaskPaths, p)
		}
	}
	for _, l := range b.GetRedactLabels() {
		if !slices.ContainsFunc(a.RedactLabels, func(c *chaperonev1.Coding) bool { return proto.Equal(c, l) }) {
			a.RedactLabels = append(a.RedactLabels, l)
		}
	}
	for _, t := range b.GetAuditTags() {
		if !slices.Contains(a.AuditTags, t) {
			a.AuditTags = append(a.AuditTags, t)
		}
	}
	a.PerEntryCheck = a.PerEntryCheck || b.GetPerEntryCheck()
	return a
}

// release applies an allowed verdict's obligations to the resource (its
// JSON as the upstream sent it, so members keep their order and numbers
// their digits) and returns what may be released; ok is false when
// nothing may.
func (x *exchange) release(v verdict, raw []byte) (json.RawMessage, bool) {
	if !v.allow {
		return nil, false
	}
	out, withheld, err := x.p.o.Apply(v.ob, raw)
	if err != nil || withheld {
		return nil, false
	}
	x.addTags(v.ob)
	return out, true
}
