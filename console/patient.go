package console

import (
	"encoding/csv"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

type patientData struct {
	Patient     string
	IncludeTPO  bool
	Looked      bool
	Consents    []consentView
	ConsentErr  string
	Grants      []*chaperonev1.BreakGlassGrant
	GrantErr    string
	Relations   []*chaperonev1.Relationship
	RelationErr string
	Disclosures []*chaperonev1.AuditRecord
	DisclErr    string
}

type consentView struct {
	*chaperonev1.StoredConsent
	Summary consentWords
}

// patient serves the patient view. The patient reference travels in the
// POST body, never in the URL.
func (c *Console) patient(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "patient", ProcDisclosures) {
		return
	}
	ctx := r.Context()
	d := patientData{}
	v := view{Title: "Patient", Nav: "patient", Data: &d}
	if r.Method != http.MethodPost {
		c.render(w, r, http.StatusOK, "patient", v)
		return
	}
	d.Patient = strings.TrimSpace(r.PostFormValue("patient"))
	d.IncludeTPO = r.PostFormValue("tpo") == "on"
	req := &chaperonev1.AuditServiceDisclosuresRequest{Patient: d.Patient, IncludeTpo: d.IncludeTPO}
	if err := c.cfg.Validator.Validate(req); err != nil {
		v.Error = validationMessage(err)
		c.render(w, r, http.StatusBadRequest, "patient", v)
		return
	}
	d.Looked = true
	v.Title = "Patient " + d.Patient
	switch {
	case c.cfg.Consents == nil:
		d.ConsentErr = "this server has no consent service"
	case !allowed(ctx, ProcConsentList):
		d.ConsentErr = "not shown: needs a grant of chaperone.v1.ConsentService/List"
	default:
		resp, err := c.cfg.Consents.List(ctx, connect.NewRequest(&chaperonev1.ConsentServiceListRequest{Patient: d.Patient}))
		if err != nil {
			d.ConsentErr = rpcMessage(err)
		} else {
			for _, sc := range resp.Msg.GetConsents() {
				d.Consents = append(d.Consents, consentView{StoredConsent: sc, Summary: describeConsent(sc)})
			}
		}
	}
	switch {
	case c.cfg.Grants == nil:
		d.GrantErr = "this server has no access service"
	case !allowed(ctx, ProcGrantList):
		d.GrantErr = "not shown: needs a grant of chaperone.v1.AccessService/ListBreakGlass"
	default:
		resp, err := c.cfg.Grants.ListBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceListBreakGlassRequest{Patient: d.Patient}))
		if err != nil {
			d.GrantErr = rpcMessage(err)
		} else {
			d.Grants = resp.Msg.GetGrants()
		}
	}
	switch {
	case c.cfg.Relationships == nil:
		d.RelationErr = "not shown: this server has no relationship service"
	case !allowed(ctx, ProcRelationships):
		d.RelationErr = "not shown: needs a grant of chaperone.v1.RelationshipService/List"
	default:
		resp, err := c.cfg.Relationships.List(ctx, connect.NewRequest(&chaperonev1.RelationshipServiceListRequest{Patient: d.Patient}))
		if err != nil {
			d.RelationErr = rpcMessage(err)
		} else {
			d.Relations = resp.Msg.GetRelationships()
		}
	}
	resp, err := c.cfg.Audit.Disclosures(ctx, connect.NewRequest(req))
	if err != nil {
		d.DisclErr = rpcMessage(err)
	} else {
		d.Disclosures = resp.Msg.GetDisclosures()
	}
	c.render(w, r, http.StatusOK, "patient", v)
}

// disclosuresCSV answers the accounting of disclosures as CSV, one row a
// disclosure.
func (c *Console) disclosuresCSV(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "patient", ProcDisclosures) {
		return
	}
	req := &chaperonev1.AuditServiceDisclosuresRequest{Patient: strings.TrimSpace(r.PostFormValue("patient")), IncludeTpo: r.PostFormValue("tpo") == "on"}
	if err := c.cfg.Validator.Validate(req); err != nil {
		c.render(w, r, http.StatusBadRequest, "error", view{Title: "Export failed", Nav: "patient", Error: validationMessage(err)})
		return
	}
	resp, err := c.cfg.Audit.Disclosures(r.Context(), connect.NewRequest(req))
	if err != nil {
		c.render(w, r, http.StatusBadGateway, "error", view{Title: "Export failed", Nav: "patient", Error: rpcMessage(err)})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	// The file name says what it is, not whose: no identifier in headers.
	w.Header().Set("Content-Disposition", `attachment; filename="accounting-of-disclosures.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"time", "recipient", "roles", "action", "resource", "purpose_of_use", "break_glass", "decision_id", "caller"})
	for _, d := range resp.Msg.GetDisclosures() {
		res := d.GetResourceType()
		if d.GetResourceId() != "" {
			res += "/" + d.GetResourceId()
		}
		bg := "no"
		if d.GetBreakGlassReason() != "" || d.GetPurposeOfUse() == "ETREAT" || contains(d.GetAuditTags(), "BREAK_GLASS") {
			bg = "yes"
		}
		_ = cw.Write([]string{formatTime(d.GetTime()), csvSafe(d.GetSubject()), csvSafe(strings.Join(d.GetRoles(), " ")), csvSafe(d.GetAction()),
			csvSafe(res), csvSafe(d.GetPurposeOfUse()), bg, csvSafe(d.GetDecisionId()), csvSafe(d.GetCaller())})
	}
	cw.Flush()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
