package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

type breakGlassData struct {
	All       bool
	Accesses  []breakGlassRow
	CanReview bool
	CanGrants bool
}

type breakGlassRow struct {
	*chaperonev1.BreakGlassAccess
	Grants   []*chaperonev1.BreakGlassGrant
	GrantErr string
}

// breakGlass serves the review queue: the emergency accesses nobody has
// reviewed yet (all of them with ?all=1), newest first, with the grants of
// their subject to their patient.
func (c *Console) breakGlass(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "break-glass", ProcListBreakGlass) {
		return
	}
	ctx := r.Context()
	d := breakGlassData{All: r.URL.Query().Get("all") == "1", CanReview: allowed(ctx, ProcReview), CanGrants: c.cfg.Grants != nil && allowed(ctx, ProcGrantList)}
	v := view{Title: "Break-glass review", Nav: "break-glass", Data: &d}
	if id := r.URL.Query().Get("reviewed"); id != "" {
		v.Notice = "Review of decision " + id + " recorded on the audit chain."
	}
	resp, err := c.cfg.Audit.ListBreakGlass(ctx, connect.NewRequest(&chaperonev1.AuditServiceListBreakGlassRequest{Unreviewed: !d.All}))
	if err != nil {
		v.Error = "The accesses could not be listed: " + rpcMessage(err)
		c.render(w, r, http.StatusBadGateway, "breakglass", v)
		return
	}
	grants := map[[2]string][]*chaperonev1.BreakGlassGrant{}
	for _, a := range resp.Msg.GetAccesses() {
		row := breakGlassRow{BreakGlassAccess: a}
		rec := a.GetRecord()
		if d.CanGrants && rec.GetSubject() != "" && rec.GetPatient() != "" {
			key := [2]string{rec.GetSubject(), rec.GetPatient()}
			gs, ok := grants[key]
			if !ok {
				g, err := c.cfg.Grants.ListBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceListBreakGlassRequest{Subject: key[0], Patient: key[1]}))
				if err != nil {
					row.GrantErr = rpcMessage(err)
				} else {
					gs = g.Msg.GetGrants()
					grants[key] = gs
				}
			}
			row.Grants = gs
		}
		d.Accesses = append(d.Accesses, row)
	}
	c.render(w, r, http.StatusOK, "breakglass", v)
}

// review writes a review record of a decision as the signed-in caller.
func (c *Console) review(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "break-glass", ProcReview) {
		return
	}
	req := &chaperonev1.AuditServiceReviewRequest{DecisionId: r.PostFormValue("decisionId"), Note: strings.TrimSpace(r.PostFormValue("note"))}
	if err := c.cfg.Validator.Validate(req); err != nil {
		c.render(w, r, http.StatusBadRequest, "error", view{Title: "Review not recorded", Nav: "break-glass", Error: validationMessage(err) + " Write a note saying what you found."})
		return
	}
	if _, err := c.cfg.Audit.Review(r.Context(), connect.NewRequest(req)); err != nil {
		c.render(w, r, http.StatusBadGateway, "error", view{Title: "Review not recorded", Nav: "break-glass", Error: rpcMessage(err)})
		return
	}
	// Post/redirect/get; the decision id is a random id, not PHI.
	http.Redirect(w, r, Prefix+"break-glass?reviewed="+url.QueryEscape(req.DecisionId), http.StatusSeeOther)
}

func prettyJSON(s string) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(s), "", "  "); err != nil {
		return s
	}
	return buf.String()
}
