package proxy

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/gateway"
)

// unreleasable are the resource types the proxy never releases as an
// entry or a read: their content is other resources or opaque data whose
// patient and labels it cannot see.
var unreleasable = map[string]bool{"Bundle": true, "Parameters": true, "Binary": true}

// read runs a read, vread or capabilities request: the returned resource
// is decided and its obligations applied before it is released.
func (x *exchange) read(req *gateway.Request) {
	f, err := x.call(http.MethodGet, x.r.RequestURI, nil, nil)
	if err != nil {
		x.upstreamFailed(err)
		return
	}
	if f.status != http.StatusOK {
		x.passError(f)
		return
	}
	m, err := decodeObject(f.body)
	if err != nil {
		x.refuse(http.StatusBadGateway, ReasonUpstream)
		return
	}
	typ := req.Mapped.Type
	if req.Mapped.Capabilities {
		typ = "CapabilityStatement"
	}
	if m["resourceType"] != typ || req.Mapped.ID != "" && m["id"] != req.Mapped.ID {
		x.refuse(http.StatusBadGateway, ReasonUpstream)
		return
	}
	out, ok := x.one(req, string(req.Mapped.Action), m)
	if !ok {
		return
	}
	x.reply(http.StatusOK, x.keptHeaders(f), out)
}

// one decides one resource and answers 403 when it may not be released.
func (x *exchange) one(req *gateway.Request, action string, m map[string]any) (json.RawMessage, bool) {
	v := x.decideAll(req.Check, action, []map[string]any{m})[0]
	if !v.allow {
		x.refuse(http.StatusForbidden, v.codes...)
		return nil, false
	}
	out, ok := x.release(v, m)
	if !ok {
		x.refuse(http.StatusForbidden, ReasonWithheld)
		return nil, false
	}
	return out, true
}

// entryAction is the action each returned resource of a request is
// decided for: the request's own for a search or history, read for what
// an operation returns.
func entryAction(a fhir.Interaction) string {
	switch a {
	case fhir.Search, fhir.History, fhir.Read, fhir.Vread:
		return string(a)
	}
	return string(fhir.Read)
}

// search runs a search, history or operation: every returned resource is
// decided in one BatchCheck per page.
func (x *exchange) search(req *gateway.Request, body []byte) {
	method := x.r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if method == http.MethodGet {
		body = nil
	}
	f, err := x.call(method, x.r.RequestURI, body, nil)
	if err != nil {
		x.upstreamFailed(err)
		return
	}
	if f.status != http.StatusOK {
		x.passError(f)
		return
	}
	m, err := decodeObject(f.body)
	if err != nil {
		x.refuse(http.StatusBadGateway, ReasonUpstream)
		return
	}
	action := entryAction(req.Mapped.Action)
	if m["resourceType"] != "Bundle" {
		if req.Mapped.Action != fhir.Operation {
			x.refuse(http.StatusBadGateway, ReasonUpstream)
			return
		}
		if m["resourceType"] == "OperationOutcome" {
			x.reply(f.status, nil, f.body)
			return
		}
		out, ok := x.one(req, action, m)
		if ok {
			x.reply(http.StatusOK, x.keptHeaders(f), out)
		}
		return
	}
	x.filterBundle(req, action, m)
	out, err := json.Marshal(m)
	if err != nil {
		x.refuse(http.StatusInternalServerError, "INTERNAL")
		return
	}
	x.reply(http.StatusOK, nil, out)
}

// filterBundle removes from a searchset or history Bundle every entry
// whose resource is denied or withheld, applies each released entry's
// obligations, rewrites the links and fullUrls to the proxy, and removes
// Bundle.total when anything was withheld or the answer has other pages.
// OperationOutcome entries pass.
func (x *exchange) filterBundle(req *gateway.Request, action string, b map[string]any) {
	entries, _ := b["entry"].([]any)
	type slot struct {
		entry map[string]any
		res   map[string]any // nil: passes as it is
	}
	var slots []slot
	var decide []map[string]any
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		switch {
		case res == nil:
			x.held++ // a deleted version or an entry without a resource
		case res["resourceType"] == "OperationOutcome":
			slots = append(slots, slot{entry, nil})
		default:
			slots = append(slots, slot{entry, res})
			decide = append(decide, res)
		}
	}
	vs := x.decideAll(req.Check, action, decide)
	kept := make([]any, 0, len(slots))
	k := 0
	for _, s := range slots {
		if s.res != nil {
			out, ok := x.release(vs[k], s.res)
			k++
			if !ok {
				x.held++
				continue
			}
			s.entry["resource"] = out
		}
		x.fixFullURL(s.entry)
		kept = append(kept, s.entry)
	}
	if len(kept) > 0 {
		b["entry"] = kept
	} else {
		delete(b, "entry")
	}
	paged := false
	if links, ok := b["link"].([]any); ok {
		var out []any
		for _, l := range links {
			link, _ := l.(map[string]any)
			u, _ := link["url"].(string)
			rel, _ := link["relation"].(string)
			nu, ok := x.rewrite(u)
			if !ok {
				continue
			}
			link["url"] = nu
			if rel == "next" || rel == "previous" || rel == "prev" {
				paged = true
			}
			out = append(out, link)
		}
		if len(out) > 0 {
			b["link"] = out
		} else {
			delete(b, "link")
		}
	}
	if x.held > 0 || paged {
		delete(b, "total")
	}
}

// fixFullURL rewrites an entry's fullUrl to the proxy, or removes it when
// it is not under the upstream base.
func (x *exchange) fixFullURL(entry map[string]any) {
	u, ok := entry["fullUrl"].(string)
	if !ok {
		return
	}
	if strings.HasPrefix(u, "urn:") {
		return
	}
	if nu, ok := x.rewrite(u); ok {
		entry["fullUrl"] = nu
		return
	}
	delete(entry, "fullUrl")
}
