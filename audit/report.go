package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"
)

// Records decodes the records of a chain for reports. It does not verify
// the chain ([Verify] does); a line that is not a record is an error.
func Records(entries iter.Seq2[Entry, error]) ([]Record, error) {
	var out []Record
	for e, err := range entries {
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(e.Line, &r); err != nil {
			return nil, fmt.Errorf("%s: %w: %v", e.Where, ErrMalformed, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Window is a time range; a zero bound is open.
type Window struct {
	Since, Until time.Time
}

// Contains reports whether t is in [Since, Until).
func (w Window) Contains(t time.Time) bool {
	return (w.Since.IsZero() || !t.Before(w.Since)) && (w.Until.IsZero() || t.Before(w.Until))
}

// TPO are the purposes of use (treatment, payment, health-care operations)
// whose disclosures HIPAA exempts from the accounting of disclosures.
var tpo = map[string]bool{"TREAT": true, "HPAYMT": true, "HOPERAT": true}

// IsTPO reports whether a purpose of use is treatment, payment or
// operations (TREAT, HPAYMT, HOPERAT).
func IsTPO(purpose string) bool { return tpo[purpose] }

// Disclosure is one release of a patient's data: who received which
// resource, when and for what purpose.
type Disclosure struct {
	Time         time.Time `json:"time"`
	DecisionID   string    `json:"decisionId"`
	Recipient    string    `json:"recipient"`
	Organization string    `json:"organization,omitempty"`
	ClientID     string    `json:"clientId,omitempty"`
	Roles        []string  `json:"roles,omitempty"`
	Action       string    `json:"action"`
	ResourceType string    `json:"resourceType"`
	ResourceID   string    `json:"resourceId,omitempty"`
	PurposeOfUse string    `json:"purposeOfUse"`
	BreakGlass   bool      `json:"breakGlass,omitempty"`
}

// Disclosures is the accounting of disclosures for one patient: every
// allowed decision about the patient's compartment in the window, leaving
// out treatment, payment and operations unless includeTPO.
func Disclosures(recs []Record, patient string, w Window, includeTPO bool) []Disclosure {
	var out []Disclosure
	for i := range recs {
		r := &recs[i]
		if r.Kind != KindDecision || r.Decision != "ALLOW" || r.Resource == nil || r.Resource.Patient != patient || !w.Contains(r.Time) {
			continue
		}
		if !includeTPO && IsTPO(r.PurposeOfUse) {
			continue
		}
		d := Disclosure{
			Time: r.Time, DecisionID: r.DecisionID, Action: r.Action,
			ResourceType: r.Resource.Type, ResourceID: r.Resource.ID,
			PurposeOfUse: r.PurposeOfUse, BreakGlass: r.IsBreakGlass(),
		}
		if s := r.Subject; s != nil {
			d.Recipient, d.Organization, d.ClientID, d.Roles = s.ID, s.Organization, s.ClientID, s.Roles
		}
		out = append(out, d)
	}
	return out
}

// ReviewNote is a recorded review.
type ReviewNote struct {
	Time time.Time `json:"time"`
	By   string    `json:"by"`
	Note string    `json:"note"`
}

// BreakGlassAccess is one emergency access and its reviews.
type BreakGlassAccess struct {
	Time         time.Time    `json:"time"`
	DecisionID   string       `json:"decisionId"`
	Subject      string       `json:"subject"`
	Roles        []string     `json:"roles,omitempty"`
	Organization string       `json:"organization,omitempty"`
	Patient      string       `json:"patient,omitempty"`
	ResourceType string       `json:"resourceType"`
	ResourceID   string       `json:"resourceId,omitempty"`
	Action       string       `json:"action"`
	PurposeOfUse string       `json:"purposeOfUse"`
	Reason       string       `json:"reason"`
	Decision     string       `json:"decision"`
	Reviews      []ReviewNote `json:"reviews,omitempty"`
}

// BreakGlass lists the break-glass accesses in the window (see
// [Record.IsBreakGlass]) with their reviews; unreviewed keeps only those
// without one.
func BreakGlass(recs []Record, w Window, unreviewed bool) []BreakGlassAccess {
	reviews := map[string][]ReviewNote{}
	for i := range recs {
		if r := &recs[i]; r.Kind == KindReview && r.Review != nil {
			reviews[r.Review.DecisionID] = append(reviews[r.Review.DecisionID], ReviewNote{Time: r.Time, By: r.Review.By, Note: r.Review.Note})
		}
	}
	var out []BreakGlassAccess
	for i := range recs {
		r := &recs[i]
		if !r.IsBreakGlass() || !w.Contains(r.Time) {
			continue
		}
		rv := reviews[r.DecisionID]
		if unreviewed && len(rv) > 0 {
			continue
		}
		a := BreakGlassAccess{Time: r.Time, DecisionID: r.DecisionID, Action: r.Action, PurposeOfUse: r.PurposeOfUse, Decision: r.Decision, Reviews: rv}
		if s := r.Subject; s != nil {
			a.Subject, a.Roles, a.Organization = s.ID, s.Roles, s.Organization
		}
		if res := r.Resource; res != nil {
			a.Patient, a.ResourceType, a.ResourceID = res.Patient, res.Type, res.ID
		}
		if r.Context != nil {
			a.Reason = r.Context.BreakGlassReason
		}
		out = append(out, a)
	}
	return out
}

// FindDecision returns the decision record with the id, if any.
func FindDecision(recs []Record, id string) (*Record, bool) {
	for i := range recs {
		if recs[i].Kind == KindDecision && recs[i].DecisionID == id {
			return &recs[i], true
		}
	}
	return nil, false
}

// Thresholds of [Anomalies]. A zero threshold turns its signal off.
type Thresholds struct {
	Window           time.Duration  // sliding window of the counting signals
	DistinctPatients int            // more distinct patients than this in a window
	SequentialIDs    int            // this many consecutive numeric ids in a row
	AfterHoursBurst  int            // this many decisions after hours in a window
	AfterHoursStart  int            // hour after-hours start (local), e.g. 20
	AfterHoursEnd    int            // hour after-hours end (local), e.g. 7
	Location         *time.Location // zone of working hours; UTC when nil
	Denials          int            // this many denied decisions in a window
}

// Signals of [Anomalies].
const (
	SignalDistinctPatients = "distinct-patients"
	SignalSequentialIDs    = "sequential-ids"
	SignalAfterHours       = "after-hours"
	SignalDenials          = "repeated-denials"
)

// Anomaly is one explainable signal about one subject.
type Anomaly struct {
	Signal  string    `json:"signal"`
	Subject string    `json:"subject"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Count   int       `json:"count"`
	Detail  string    `json:"detail"`
}

// Anomalies looks at each subject's decisions in the window for: more than
// DistinctPatients patients within Window; a run of SequentialIDs
// consecutive numeric patient or resource ids; AfterHoursBurst decisions
// after hours within Window; Denials denied decisions within Window. Each
// subject gets at most one anomaly per signal: its worst window.
func Anomalies(recs []Record, w Window, th Thresholds) []Anomaly {
	loc := th.Location
	if loc == nil {
		loc = time.UTC
	}
	bySubject := map[string][]*Record{}
	for i := range recs {
		r := &recs[i]
		if r.Kind == KindDecision && r.Subject != nil && w.Contains(r.Time) {
			bySubject[r.Subject.ID] = append(bySubject[r.Subject.ID], r)
		}
	}
	var out []Anomaly
	for subj, rs := range bySubject {
		slices.SortStableFunc(rs, func(a, b *Record) int { return a.Time.Compare(b.Time) })
		if th.DistinctPatients > 0 {
			if n, from, to := maxDistinct(rs, th.Window); n > th.DistinctPatients {
				out = append(out, Anomaly{SignalDistinctPatients, subj, from, to, n,
					fmt.Sprintf("%d distinct patients within %s (threshold %d)", n, th.Window, th.DistinctPatients)})
			}
		}
		if th.SequentialIDs > 0 {
			if n, from, to, what := longestRun(rs); n >= th.SequentialIDs {
				out = append(out, Anomaly{SignalSequentialIDs, subj, from, to, n,
					fmt.Sprintf("%d consecutive %s ids in a row (threshold %d)", n, what, th.SequentialIDs)})
			}
		}
		if th.AfterHoursBurst > 0 {
			var times []time.Time
			for _, r := range rs {
				if afterHours(r.Time.In(loc).Hour(), th.AfterHoursStart, th.AfterHoursEnd) {
					times = append(times, r.Time)
				}
			}
			if n, from, to := maxInWindow(times, th.Window); n >= th.AfterHoursBurst {
				out = append(out, Anomaly{SignalAfterHours, subj, from, to, n,
					fmt.Sprintf("%d decisions between %02d:00 and %02d:00 %s within %s (threshold %d)", n, th.AfterHoursStart, th.AfterHoursEnd, loc, th.Window, th.AfterHoursBurst)})
			}
		}
		if th.Denials > 0 {
			var times []time.Time
			for _, r := range rs {
				if r.Decision == "DENY" {
					times = append(times, r.Time)
				}
			}
			if n, from, to := maxInWindow(times, th.Window); n >= th.Denials {
				out = append(out, Anomaly{SignalDenials, subj, from, to, n,
					fmt.Sprintf("%d denied decisions within %s (threshold %d)", n, th.Window, th.Denials)})
			}
		}
	}
	slices.SortFunc(out, func(a, b Anomaly) int {
		return cmp.Or(a.From.Compare(b.From), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Signal, b.Signal))
	})
	return out
}

func afterHours(h, start, end int) bool {
	if start == end {
		return false
	}
	if start < end {
		return h >= start && h < end
	}
	return h >= start || h < end
}

// maxInWindow is the most times (sorted) within any window of length d.
func maxInWindow(ts []time.Time, d time.Duration) (int, time.Time, time.Time) {
	best, bi, bj := 0, 0, 0
	for i, j := 0, 0; j < len(ts); j++ {
		for ts[j].Sub(ts[i]) > d {
			i++
		}
		if j-i+1 > best {
			best, bi, bj = j-i+1, i, j
		}
	}
	if best == 0 {
		return 0, time.Time{}, time.Time{}
	}
	return best, ts[bi], ts[bj]
}

// maxDistinct is the most distinct patients within any window of length d.
func maxDistinct(rs []*Record, d time.Duration) (int, time.Time, time.Time) {
	var ps []*Record
	for _, r := range rs {
		if r.Resource != nil && r.Resource.Patient != "" {
			ps = append(ps, r)
		}
	}
	count := map[string]int{}
	best, bi, bj := 0, 0, 0
	for i, j := 0, 0; j < len(ps); j++ {
		count[ps[j].Resource.Patient]++
		for ps[j].Time.Sub(ps[i].Time) > d {
			p := ps[i].Resource.Patient
			if count[p]--; count[p] == 0 {
				delete(count, p)
			}
			i++
		}
		if len(count) > best {
			best, bi, bj = len(count), i, j
		}
	}
	if best == 0 {
		return 0, time.Time{}, time.Time{}
	}
	return best, ps[bi].Time, ps[bj].Time
}

// longestRun finds the longest run of accesses whose numeric id is one more
// (or one less) than the previous distinct one: on patient references and on
// resource ids of each type.
func longestRun(rs []*Record) (int, time.Time, time.Time, string) {
	type state struct {
		prefix    string
		last, dir int64
		n         int
		from      time.Time
	}
	runs := map[string]*state{}
	best, bestWhat := 0, ""
	var bFrom, bTo time.Time
	step := func(key, id string, t time.Time) {
		prefix, num, ok := numericTail(id)
		if !ok {
			return
		}
		s := runs[key]
		switch {
		case s == nil || s.prefix != prefix:
			s = &state{prefix: prefix, last: num, n: 1, from: t}
			runs[key] = s
		case num == s.last:
			return // the same id again
		case (num == s.last+1 || num == s.last-1) && (s.dir == 0 || s.dir == num-s.last):
			s.dir, s.last = num-s.last, num
			s.n++
		default:
			*s = state{prefix: prefix, last: num, n: 1, from: t}
		}
		if s.n > best {
			best, bestWhat, bFrom, bTo = s.n, key, s.from, t
		}
	}
	for _, r := range rs {
		if r.Resource == nil {
			continue
		}
		if r.Resource.Patient != "" {
			step("patient", r.Resource.Patient, r.Time)
		}
		if r.Resource.ID != "" {
			step(r.Resource.Type, r.Resource.ID, r.Time)
		}
	}
	return best, bFrom, bTo, bestWhat
}

// numericTail splits "Patient/52" into "Patient/" and 52.
func numericTail(id string) (string, int64, bool) {
	i := len(id)
	for i > 0 && id[i-1] >= '0' && id[i-1] <= '9' {
		i--
	}
	if i == len(id) || len(id)-i > 18 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(id[i:], 10, 64)
	return id[:i], n, err == nil
}

// RoleAccess is what the subjects acting under one role accessed.
type RoleAccess struct {
	Role     string          `json:"role"`
	Subjects []SubjectAccess `json:"subjects"`
}

// SubjectAccess sums up one subject's decisions under a role.
type SubjectAccess struct {
	Subject       string         `json:"subject"`
	Allowed       int            `json:"allowed"`
	Denied        int            `json:"denied"`
	BreakGlass    int            `json:"breakGlass"`
	Patients      int            `json:"patients"`
	ResourceTypes map[string]int `json:"resourceTypes"`
	Actions       map[string]int `json:"actions"`
	First         time.Time      `json:"first"`
	Last          time.Time      `json:"last"`
}

// NoRole names the group of subjects that presented no role.
const NoRole = "(no role)"

// Recertify sums up, per role, who of the organization accessed what in the
// window: for periodic access reviews. A subject with several roles is
// listed under each.
func Recertify(recs []Record, organization string, w Window) []RoleAccess {
	type key struct{ role, subject string }
	acc := map[key]*SubjectAccess{}
	patients := map[key]map[string]bool{}
	for i := range recs {
		r := &recs[i]
		if r.Kind != KindDecision || r.Subject == nil || r.Subject.Organization != organization || !w.Contains(r.Time) {
			continue
		}
		roles := r.Subject.Roles
		if len(roles) == 0 {
			roles = []string{NoRole}
		}
		for _, role := range roles {
			k := key{role, r.Subject.ID}
			a := acc[k]
			if a == nil {
				a = &SubjectAccess{Subject: r.Subject.ID, ResourceTypes: map[string]int{}, Actions: map[string]int{}, First: r.Time}
				acc[k], patients[k] = a, map[string]bool{}
			}
			if r.Decision == "ALLOW" {
				a.Allowed++
			} else {
				a.Denied++
			}
			if r.IsBreakGlass() {
				a.BreakGlass++
			}
			if r.Resource != nil {
				a.ResourceTypes[r.Resource.Type]++
				if r.Resource.Patient != "" {
					patients[k][r.Resource.Patient] = true
				}
			}
			a.Actions[r.Action]++
			if r.Time.Before(a.First) {
				a.First = r.Time
			}
			if r.Time.After(a.Last) {
				a.Last = r.Time
			}
		}
	}
	byRole := map[string][]SubjectAccess{}
	for k, a := range acc {
		a.Patients = len(patients[k])
		byRole[k.role] = append(byRole[k.role], *a)
	}
	out := make([]RoleAccess, 0, len(byRole))
	for role, subs := range byRole {
		slices.SortFunc(subs, func(a, b SubjectAccess) int { return cmp.Compare(a.Subject, b.Subject) })
		out = append(out, RoleAccess{Role: role, Subjects: subs})
	}
	slices.SortFunc(out, func(a, b RoleAccess) int { return cmp.Compare(a.Role, b.Role) })
	return out
}
