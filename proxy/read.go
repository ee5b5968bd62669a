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
	out, ok := x.one(req, string(req.Mapped.Action), m, f.body)
	if !ok {
		return
	}
	x.reply(http.StatusOK, x.keptHeaders(f), out)
}

// one decides one resource (m, decoded from raw) and answers 403 when it
// may not be released.
func (x *exchange) one(req *gateway.Request, action string, m map[string]any, raw []byte) (json.RawMessage, bool) {
	v := x.decideAll(req.Check, action, []map[string]any{m})[0]
	if !v.allow {
		x.refuse(http.StatusForbidden, v.codes...)
		return nil, false
	}
	out, ok := x.release(v, raw)
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
	action := entryAction(req.Mapped.Action)
	var b map[string]json.RawMessage
	if err := json.Unmarshal(f.body, &b); err != nil || b == nil {
		x.refuse(http.StatusBadGateway, ReasonUpstream)
		return
	}
	var typ string
	_ = json.Unmarshal(b["resourceType"], &typ)
	if typ != "Bundle" {
		if req.Mapped.Action != fhir.Operation {
			x.refuse(http.StatusBadGateway, ReasonUpstream)
			return
		}
		if typ == "OperationOutcome" {
			x.reply(f.status, nil, f.body)
			return
		}
		m, err := decodeObject(f.body)
		if err != nil {
			x.refuse(http.StatusBadGateway, ReasonUpstream)
			return
		}
		out, ok := x.one(req, action, m, f.body)
		if ok {
			x.reply(http.StatusOK, x.keptHeaders(f), out)
		}
		return
	}
	if err := x.filterRaw(req, action, b); err != nil {
		x.refuse(http.StatusBadGateway, ReasonUpstream)
		return
	}
	out, err := json.Marshal(b)
	if err != nil {
		x.refuse(http.StatusInternalServerError, "INTERNAL")
		return
	}
	x.reply(http.StatusOK, nil, out)
}

// filterRaw is filterBundle on a Bundle whose members are still JSON
// text: each entry resource is decoded once for its attributes and given
// to the applier as the upstream wrote it.
func (x *exchange) filterRaw(req *gateway.Request, action string, b map[string]json.RawMessage) error {
	var entries []map[string]json.RawMessage
	if raw, ok := b["entry"]; ok {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return err
		}
	}
	type slot struct {
		entry map[string]json.RawMessage
		raw   json.RawMessage // nil: passes as it is
	}
	var slots []slot
	var decide []map[string]any
	for _, entry := range entries {
		raw := entry["resource"]
		if len(raw) == 0 || string(raw) == "null" {
			x.held++ // a deleted version or an entry without a resource
			continue
		}
		m, err := decodeObject(raw)
		if err != nil {
			x.held++
			continue
		}
		if m["resourceType"] == "OperationOutcome" {
			slots = append(slots, slot{entry, nil})
			continue
		}
		slots = append(slots, slot{entry, raw})
		decide = append(decide, m)
	}
	vs := x.decideAll(req.Check, action, decide)
	kept := make([]map[string]json.RawMessage, 0, len(slots))
	k := 0
	for _, s := range slots {
		if s.raw != nil {
			out, ok := x.release(vs[k], s.raw)
			k++
			if !ok {
				x.held++
				continue
			}
			s.entry["resource"] = out
		}
		if raw, ok := s.entry["fullUrl"]; ok {
			var u string
			_ = json.Unmarshal(raw, &u)
			e := map[string]any{"fullUrl": u}
			x.fixFullURL(e)
			if nu, ok := e["fullUrl"].(string); ok {
				s.entry["fullUrl"] = marshal(nu)
			} else {
				delete(s.entry, "fullUrl")
			}
		}
		kept = append(kept, s.entry)
	}
	if len(kept) > 0 {
		b["entry"] = marshal(kept)
	} else {
		delete(b, "entry")
	}
	paged := false
	if raw, ok := b["link"]; ok {
		var links []map[string]any
		_ = json.Unmarshal(raw, &links)
		var out []map[string]any
		for _, link := range links {
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
			b["link"] = marshal(out)
		} else {
			delete(b, "link")
		}
	}
	if x.held > 0 || paged {
		delete(b, "total")
	}
	return nil
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
			out, ok := x.release(vs[k], marshal(s.res))
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
