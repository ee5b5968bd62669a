package proxy

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/gateway"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// entryState is what the proxy knows of one entry of a batch or
// transaction.
type entryState struct {
	req   *gateway.Request
	entry map[string]any
	codes []string // why it is refused; empty when it may go upstream
	sent  int      // its index in the forwarded Bundle, -1 when not sent
}

// batch runs a batch or a transaction. Every entry is authorized before
// anything is forwarded: in the request phase (one BatchCheck for all
// entries), and writes also in the resource phase (with the entry's
// resource and the stored one, as a plain write). A transaction with any
// refused entry is refused whole; in a batch the refused entries are
// answered 403 inside the batch-response and never forwarded. What comes
// back is released as for plain requests: read results decided, search
// results filtered, write results without their resource.
func (x *exchange) batch(reqs []*gateway.Request, body []byte) {
	b, err := decodeObject(body)
	if err != nil {
		x.refuse(http.StatusBadRequest, "BAD_BUNDLE")
		return
	}
	entries, _ := b["entry"].([]any)
	if len(entries) != len(reqs) {
		x.refuse(http.StatusBadRequest, "BAD_BUNDLE")
		return
	}
	transaction := b["type"] == "transaction"
	states := make([]*entryState, len(reqs))
	var checks []*chaperonev1.CheckRequest
	var checked []int
	for i, r := range reqs {
		entry, _ := entries[r.Entry].(map[string]any)
		st := &entryState{req: r, entry: entry, sent: -1}
		states[i] = st
		request, _ := entry["request"].(map[string]any)
		u, _ := request["url"].(string)
		_, query, _ := strings.Cut(u, "?")
		method, _ := request["method"].(string)
		if code := x.p.refusal(r, method, query); code != "" {
			st.codes = []string{ReasonUnsupported, code}
			continue
		}
		if r.Mapped.Action == fhir.Patch {
			st.codes = []string{ReasonUnsupported, "PATCH_IN_BUNDLE"}
			continue
		}
		checks = append(checks, r.Check)
		checked = append(checked, i)
	}
	if len(checks) > 0 {
		resps := x.p.o.Decider.BatchCheck(x.ctx, checks)
		if len(resps) != len(checks) {
			resps = make([]*chaperonev1.CheckResponse, len(checks))
		}
		x.addIDs(resps...)
		for k, resp := range resps {
			if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				st := states[checked[k]]
				for _, rs := range resp.GetReasons() {
					st.codes = append(st.codes, rs.GetCode())
				}
				if len(st.codes) == 0 {
					st.codes = []string{ReasonDenied}
				}
			}
		}
	}
	for _, st := range states {
		if len(st.codes) == 0 {
			x.authorizeWrite(st)
		}
	}
	if transaction {
		var codes []string
		for _, st := range states {
			for _, c := range st.codes {
				if !contains(codes, c) {
					codes = append(codes, c)
				}
			}
		}
		if len(codes) > 0 {
			x.refuse(http.StatusForbidden, codes...)
			return
		}
	}
	var forward []any
	for _, st := range states {
		if len(st.codes) == 0 {
			st.sent = len(forward)
			forward = append(forward, st.entry)
		}
	}
	var answers []any
	if len(forward) > 0 {
		out := map[string]any{"resourceType": "Bundle", "type": b["type"], "entry": forward}
		f, err := x.call(http.MethodPost, x.r.RequestURI, marshal(out), http.Header{"Prefer": {"return=minimal"}, "Content-Type": {"application/fhir+json"}})
		if err != nil {
			x.upstreamFailed(err)
			return
		}
		if f.status != http.StatusOK {
			x.passError(f)
			return
		}
		got, err := decodeObject(f.body)
		want := "batch-response"
		if transaction {
			want = "transaction-response"
		}
		if err == nil {
			answers, _ = got["entry"].([]any)
		}
		if err != nil || got["resourceType"] != "Bundle" || got["type"] != want || len(answers) != len(forward) {
			x.refuse(http.StatusBadGateway, ReasonUpstream)
			return
		}
	}
	result := make([]any, len(states))
	for i, st := range states {
		if st.sent < 0 {
			result[i] = refusedEntry(st.codes)
			continue
		}
		answer, _ := answers[st.sent].(map[string]any)
		result[i] = x.releaseEntry(st, answer)
	}
	typ := "batch-response"
	if transaction {
		typ = "transaction-response"
	}
	x.reply(http.StatusOK, nil, marshal(map[string]any{"resourceType": "Bundle", "type": typ, "entry": result}))
}

// authorizeWrite decides a write entry in the resource phase and pins the
// stored version it decided on (request.ifMatch).
func (x *exchange) authorizeWrite(st *entryState) {
	m := st.req.Mapped
	var decide []map[string]any
	switch m.Action {
	case fhir.Create, fhir.Update, fhir.Delete:
	default:
		return
	}
	request, _ := st.entry["request"].(map[string]any)
	if m.Action != fhir.Create {
		f, err := x.call(http.MethodGet, x.instancePath(m.Type, m.ID), nil, nil)
		switch {
		case err != nil:
			st.codes = []string{ReasonUpstream}
			return
		case f.status == http.StatusOK:
			cur, err := decodeObject(f.body)
			tag := versionTag(cur)
			if err != nil || cur["resourceType"] != m.Type || cur["id"] != m.ID || tag == "" {
				st.codes = []string{ReasonUpstream}
				return
			}
			if im, _ := request["ifMatch"].(string); im != "" && normalTag(im) != normalTag(tag) {
				st.codes = []string{ReasonVersionConflict}
				return
			}
			request["ifMatch"] = tag
			decide = append(decide, cur)
		case m.Action == fhir.Update && (f.status == http.StatusNotFound || f.status == http.StatusGone):
			if im, _ := request["ifMatch"].(string); im != "" {
				st.codes = []string{ReasonVersionConflict}
				return
			}
		default:
			st.codes = []string{"NOT_FOUND"}
			return
		}
	}
	if m.Action != fhir.Delete {
		res, _ := st.entry["resource"].(map[string]any)
		if res == nil || res["resourceType"] != m.Type || m.Action == fhir.Update && res["id"] != m.ID {
			st.codes = []string{ReasonBodyMismatch}
			return
		}
		decide = append(decide, res)
	}
	for _, v := range x.decideAll(st.req.Check, string(m.Action), decide) {
		if !v.allow {
			st.codes = append(st.codes, v.codes...)
		}
	}
}

// releaseEntry releases one upstream answer entry of an entry that was
// forwarded.
func (x *exchange) releaseEntry(st *entryState, answer map[string]any) any {
	if answer == nil {
		return refusedEntry([]string{ReasonUpstream})
	}
	res, _ := answer["resource"].(map[string]any)
	m := st.req.Mapped
	switch {
	case res == nil:
	case res["resourceType"] == "OperationOutcome":
	case m.Action == fhir.Create || m.Action == fhir.Update || m.Action == fhir.Delete:
		delete(answer, "resource")
	case res["resourceType"] == "Bundle" && (m.Action == fhir.Search || m.Action == fhir.History || m.Action == fhir.Operation):
		x.filterBundle(st.req, entryAction(m.Action), res)
	default:
		v := x.decideAll(st.req.Check, entryAction(m.Action), []map[string]any{res})[0]
		out, ok := x.release(v, marshal(res))
		if !ok {
			codes := v.codes
			if len(codes) == 0 {
				codes = []string{ReasonWithheld}
			}
			x.held++
			return refusedEntry(codes)
		}
		answer["resource"] = out
	}
	// An outcome's texts may name what the user may not see: codes only.
	if resp, ok := answer["response"].(map[string]any); ok {
		if oo, ok := resp["outcome"].(map[string]any); ok {
			resp["outcome"] = json.RawMessage(plainOutcome(oo))
		}
	}
	if oo, ok := answer["resource"].(map[string]any); ok && oo["resourceType"] == "OperationOutcome" {
		answer["resource"] = json.RawMessage(plainOutcome(oo))
	}
	x.fixFullURL(answer)
	return answer
}

// refusedEntry is the batch-response entry of a refused entry.
func refusedEntry(codes []string) map[string]any {
	return map[string]any{"response": map[string]any{
		"status":  "403 Forbidden",
		"outcome": json.RawMessage(gateway.OperationOutcome(http.StatusForbidden, codes)),
	}}
}
