package proxy

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/gateway"
)

// write runs a create, update, patch or delete. Each is decided in the
// resource phase before it is forwarded: a create with the body's
// attributes; an update with both the stored resource's and the body's
// (moving a resource to another patient needs both); a patch with the
// stored resource's and those of the result of applying the JSON Patch;
// a delete with the stored resource's. The stored version decided on is
// sent as If-Match, so the write fails upstream if it changed meanwhile; a
// client's own If-Match must name that version. The upstream's answer is
// released without its resource (Prefer: return=minimal): the status and
// the Location, ETag and Last-Modified headers.
func (x *exchange) write(req *gateway.Request, body []byte) {
	m := req.Mapped
	var decide []map[string]any
	var sent []byte = body
	var current map[string]any
	if m.Action != fhir.Create {
		f, err := x.call(http.MethodGet, "/"+strings.TrimPrefix(x.instancePath(m.Type, m.ID), "/"), nil, nil)
		if err != nil {
			x.upstreamFailed(err)
			return
		}
		switch {
		case f.status == http.StatusOK:
			cur, err := decodeObject(f.body)
			if err != nil || cur["resourceType"] != m.Type || cur["id"] != m.ID {
				x.refuse(http.StatusBadGateway, ReasonUpstream)
				return
			}
			current = cur
			decide = append(decide, cur)
		case m.Action == fhir.Update && (f.status == http.StatusNotFound || f.status == http.StatusGone):
			// update as create: only the body is decided
		default:
			x.passError(f)
			return
		}
	}
	switch m.Action {
	case fhir.Create, fhir.Update:
		res, err := decodeObject(body)
		if err != nil || res["resourceType"] != m.Type || m.Action == fhir.Update && res["id"] != m.ID {
			x.refuse(http.StatusBadRequest, ReasonBodyMismatch)
			return
		}
		decide = append(decide, res)
	case fhir.Patch:
		if ct := x.r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json-patch+json") {
			x.refuse(http.StatusUnsupportedMediaType, ReasonFormat)
			return
		}
		patched, err := applyPatch(current, body)
		if err != nil || patched["resourceType"] != m.Type || patched["id"] != m.ID {
			x.refuse(http.StatusUnprocessableEntity, "BAD_PATCH")
			return
		}
		decide = append(decide, patched)
	}
	vs := x.decideAll(req.Check, string(m.Action), decide)
	var codes []string
	for _, v := range vs {
		if !v.allow {
			codes = append(codes, v.codes...)
		}
	}
	if len(codes) > 0 {
		x.refuse(http.StatusForbidden, codes...)
		return
	}
	extra := http.Header{"Prefer": {"return=minimal"}}
	if current != nil {
		etag := versionTag(current)
		if etag == "" {
			x.refuse(http.StatusBadGateway, ReasonUpstream)
			return
		}
		if im := x.r.Header.Get("If-Match"); im != "" && normalTag(im) != normalTag(etag) {
			x.refuse(http.StatusPreconditionFailed, ReasonVersionConflict)
			return
		}
		extra.Set("If-Match", etag)
	} else if im := x.r.Header.Get("If-Match"); im != "" {
		// an If-Match on what does not exist cannot hold
		x.refuse(http.StatusPreconditionFailed, ReasonVersionConflict)
		return
	}
	f, err := x.call(x.r.Method, x.r.RequestURI, sent, extra)
	if err != nil {
		x.upstreamFailed(err)
		return
	}
	if f.status >= 300 {
		x.passError(f)
		return
	}
	x.reply(f.status, x.keptHeaders(f), nil)
}

// instancePath is the request URI of Type/id under the base.
func (x *exchange) instancePath(typ, id string) string {
	return x.p.base + "/" + typ + "/" + id
}

// versionTag is the weak ETag of a resource's meta.versionId, "" without
// one.
func versionTag(m map[string]any) string {
	meta, _ := m["meta"].(map[string]any)
	v, _ := meta["versionId"].(string)
	if v == "" {
		return ""
	}
	return `W/"` + v + `"`
}

func normalTag(t string) string {
	return strings.TrimPrefix(strings.TrimSpace(t), "W/")
}

// marshal is json.Marshal for values made of decoded JSON.
func marshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
