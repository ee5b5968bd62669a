package console

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// searchForm is the Decisions page's filter, as typed.
type searchForm struct {
	Patient, Subject, Resource, Decision, Reason, Since, Until string
}

type decisionsData struct {
	Form       searchForm
	Searched   bool
	Records    []*chaperonev1.AuditRecord
	Truncated  bool
	Verify     *chaperonev1.AuditServiceVerifyResponse
	VerifiedAt time.Time
	VerifyErr  string
	CanVerify  bool
}

// decisions serves the Decisions page: GET shows the newest decisions,
// POST searches (identifiers travel in the body, never in the URL).
func (c *Console) decisions(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "decisions", ProcSearch) {
		return
	}
	ctx := r.Context()
	d := decisionsData{CanVerify: allowed(ctx, ProcVerify)}
	v := view{Title: "Decisions", Nav: "decisions", Data: &d}
	req := &chaperonev1.AuditServiceSearchRequest{Limit: 50}
	if r.Method == http.MethodPost {
		d.Searched = true
		d.Form = searchForm{
			Patient: strings.TrimSpace(r.PostFormValue("patient")), Subject: strings.TrimSpace(r.PostFormValue("subject")),
			Resource: strings.TrimSpace(r.PostFormValue("resource")), Decision: r.PostFormValue("decision"),
			Reason: strings.TrimSpace(r.PostFormValue("reason")), Since: r.PostFormValue("since"), Until: r.PostFormValue("until"),
		}
		req = &chaperonev1.AuditServiceSearchRequest{
			Patient: d.Form.Patient, Subject: d.Form.Subject, Resource: d.Form.Resource,
			Decision: d.Form.Decision, Reason: d.Form.Reason, Limit: 200,
		}
		var err error
		if req.Since, err = formTime(d.Form.Since); err != nil {
			v.Error = "From: " + err.Error()
		}
		if req.Until, err = formTime(d.Form.Until); err != nil {
			v.Error = "To: " + err.Error()
		}
	}
	if v.Error == "" {
		if err := c.cfg.Validator.Validate(req); err != nil {
			v.Error = validationMessage(err)
		}
	}
	if v.Error == "" {
		resp, err := c.cfg.Audit.Search(ctx, connect.NewRequest(req))
		if err != nil {
			v.Error = "Search failed: " + rpcMessage(err)
		} else {
			d.Records, d.Truncated = resp.Msg.GetRecords(), resp.Msg.GetTruncated()
		}
	}
	if d.CanVerify {
		// Verifying walks the whole chain (about a second per 10,000
		// records on a busy 2-core machine): on request, or once when no
		// result is at hand; the last result is shown meanwhile.
		last, at := c.lastVerify()
		if last == nil || r.URL.Query().Get("verify") == "1" {
			resp, err := c.cfg.Audit.Verify(ctx, connect.NewRequest(&chaperonev1.AuditServiceVerifyRequest{}))
			if err != nil {
				d.VerifyErr = rpcMessage(err)
			} else {
				last, at = resp.Msg, c.now()
				c.setVerify(last, at)
			}
		}
		d.Verify, d.VerifiedAt = last, at
	}
	status := http.StatusOK
	if v.Error != "" {
		status = http.StatusBadRequest
	}
	c.render(w, r, status, "decisions", v)
}

type recordData struct {
	Record    *chaperonev1.AuditRecord
	Reviews   []*chaperonev1.AuditReview
	CanReview bool
	Pretty    string
}

// record shows one decision record and its reviews. The decision id in
// the URL is a random id, not PHI.
func (c *Console) record(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "decisions", ProcGetRecord) {
		return
	}
	req := &chaperonev1.AuditServiceGetRecordRequest{DecisionId: r.URL.Query().Get("id")}
	if err := c.cfg.Validator.Validate(req); err != nil {
		c.render(w, r, http.StatusBadRequest, "record", view{Title: "Decision record", Nav: "decisions", Error: validationMessage(err)})
		return
	}
	resp, err := c.cfg.Audit.GetRecord(r.Context(), connect.NewRequest(req))
	if err != nil {
		status := http.StatusBadGateway
		if connect.CodeOf(err) == connect.CodeNotFound {
			status = http.StatusNotFound
		}
		c.render(w, r, status, "record", view{Title: "Decision record", Nav: "decisions", Error: rpcMessage(err)})
		return
	}
	d := recordData{Record: resp.Msg.GetRecord(), Reviews: resp.Msg.GetReviews(), CanReview: allowed(r.Context(), ProcReview)}
	d.Pretty = prettyJSON(d.Record.GetJson())
	c.render(w, r, http.StatusOK, "record", view{Title: "Decision " + d.Record.GetDecisionId(), Nav: "decisions", Data: &d})
}

// formTime reads an <input type=datetime-local> value (UTC) or RFC 3339.
func formTime(s string) (*timestamppb.Timestamp, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, errors.New("not a date and time (YYYY-MM-DDTHH:MM, UTC)")
}

// validationMessage names the fields a request broke.
func validationMessage(err error) string {
	var ve *validation.Error
	if errors.As(err, &ve) {
		var parts []string
		for _, v := range ve.Violations {
			parts = append(parts, v.Field+": "+v.Message)
		}
		return "Invalid input: " + strings.Join(parts, "; ")
	}
	return "Invalid input: " + err.Error()
}

// lastVerify is the last chain verification and when it ran.
func (c *Console) lastVerify() (*chaperonev1.AuditServiceVerifyResponse, time.Time) {
	c.verifyMu.Lock()
	defer c.verifyMu.Unlock()
	return c.verified, c.verifiedAt
}

func (c *Console) setVerify(v *chaperonev1.AuditServiceVerifyResponse, at time.Time) {
	c.verifyMu.Lock()
	defer c.verifyMu.Unlock()
	c.verified, c.verifiedAt = v, at
}
