package bundles

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Request is one recorded CheckRequest to replay.
type Request struct {
	// Line is the request's line number in its file (1-based).
	Line int
	// JSON is the request as recorded, compacted.
	JSON string
	Msg  *chaperonev1.CheckRequest
}

// ReadRequests reads JSON lines of CheckRequests (proto3 JSON), skipping
// empty lines, and validates each with v. An invalid line is an error
// naming its number.
func ReadRequests(r io.Reader, v *validation.Validator) ([]Request, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var out []Request
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		msg := &chaperonev1.CheckRequest{}
		if err := v.DecodeJSON(line, msg); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, line); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, Request{Line: n, JSON: compact.String(), Msg: msg})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read requests: %w", err)
	}
	return out, nil
}

// DiffOptions configures [Diff].
type DiffOptions struct {
	// Consents answers the consent question in both replays. Describe it
	// in ConsentsNote, e.g. "replayed without consents".
	Consents     engine.ConsentEvaluator
	ConsentsNote string
	// Now is the decision time of requests without context.time (default:
	// the time Diff starts); both bundles see the same one.
	Now time.Time
	// Samples is how many sample requests each group keeps (default 3).
	Samples int
	// OldDigest and NewDigest name the bundles' digests in the report.
	OldDigest, NewDigest string
}

// BundleRef names a bundle in a [Report].
type BundleRef struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Digest   string `json:"digest,omitempty"`
}

// ReportVersion is the version of the JSON shape of [Report]: it changes
// only when a field is removed or changes meaning.
const ReportVersion = 2

// Report is the decision impact of replacing one bundle with another. Its
// JSON (see [Report.JSON]) is a stable interface: every list is present
// (empty rather than null) and sorted, most requests first.
type Report struct {
	Version  int       `json:"version"`
	Old      BundleRef `json:"old"`
	New      BundleRef `json:"new"`
	Consents string    `json:"consents,omitempty"`
	// Requests replayed, each counted in exactly one of: Changed (another
	// decision), ReasonsChanged (the same decision and obligations, other
	// reasons), ObligationsChanged (the same decision, other obligations;
	// its reasons may differ too) and Unchanged.
	Requests           int `json:"requests"`
	Changed            int `json:"changed"`
	ReasonsChanged     int `json:"reasonsChanged"`
	ObligationsChanged int `json:"obligationsChanged"`
	Unchanged          int `json:"unchanged"`
	// ObligationKinds counts the requests of ObligationsChanged by the
	// kind of obligation that changed (a request may count in several).
	ObligationKinds ObligationKinds `json:"obligationKinds"`
	// Transitions count changed decisions by old → new decision.
	Transitions []Transition `json:"transitions"`
	// Groups are the changed decisions; ReasonGroups the same decisions
	// given for other reasons; both grouped by old → new decision and
	// policy delta.
	Groups       []Group `json:"groups"`
	ReasonGroups []Group `json:"reasonChanges"`
	// Obligations are the changed obligations of unchanged decisions,
	// grouped by decision and change.
	Obligations []ObligationGroup `json:"obligations"`
}

// ObligationKinds counts requests by the kind of obligation that changed.
type ObligationKinds struct {
	MaskPaths     int `json:"maskPaths"`
	RedactLabels  int `json:"redactLabels"`
	AuditTags     int `json:"auditTags"`
	PerEntryCheck int `json:"perEntryCheck"`
}

// Transition counts decisions that went from one value to another.
type Transition struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
}

// Count is how many requests of a group share a value.
type Count struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Group is a set of requests with the same old → new decision (the same
// decision, for a reason change) and the same policy delta.
type Group struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Policy is the policy delta, the group's key: "+id" for a policy (a
	// permit that permits, a forbid that denies) that decides the request
	// only under the new bundle, "-id" only under the old; when both name
	// the same policies, the reason codes given under only one ("+CODE",
	// "-CODE"). Consent provisions are not policies: see Consent.
	Policy string `json:"policy"`
	Count  int    `json:"count"`
	// Reasons are the reason-code deltas of the requests ("+NO_PERMIT
	// -POLICY_PERMIT"), Consent the consent deltas ("+CONSENT_PERMIT",
	// "-CONSENT_DENY +CONSENT_OVERRIDDEN"; the consent codes are
	// CONSENT_PERMIT, CONSENT_DENY, CONSENT_OVERRIDDEN and NO_CONSENT),
	// Roles the subjects' roles (sorted, comma separated, "-" for none),
	// ResourceTypes the resource types, each with how many requests had it.
	Reasons       []Count `json:"reasons"`
	Consent       []Count `json:"consent"`
	Roles         []Count `json:"roles"`
	ResourceTypes []Count `json:"resourceTypes"`
	// NewObligations, when the new decision is ALLOW, are the obligations
	// the new decisions carry ("mask PATH", "redact SYSTEM|CODE", "tag TAG",
	// "perEntryCheck"), each with how many requests carry it.
	NewObligations []Count  `json:"newObligations"`
	Samples        []Sample `json:"samples"`
}

// ObligationGroup is a set of unchanged decisions whose obligations changed
// the same way.
type ObligationGroup struct {
	Decision string `json:"decision"`
	// Change is how the obligations changed: "mask +PATH -PATH",
	// "redact +SYSTEM|CODE", "tags +TAG", "perEntryCheck +" (now set) or
	// "perEntryCheck -", joined with "; ".
	Change        string   `json:"change"`
	Count         int      `json:"count"`
	Policies      []Count  `json:"policies"`
	Roles         []Count  `json:"roles"`
	ResourceTypes []Count  `json:"resourceTypes"`
	Samples       []Sample `json:"samples"`
}

// Sample is one replayed request with both answers.
type Sample struct {
	Line           int    `json:"line"`
	Request        string `json:"request"`
	OldReasons     string `json:"oldReasons"`
	NewReasons     string `json:"newReasons"`
	OldObligations string `json:"oldObligations"`
	NewObligations string `json:"newObligations"`
}

// groupAcc accumulates a group's counts.
type groupAcc struct {
	g                                   Group
	reasons, consent, roles, types, obl map[string]int
}

type oblAcc struct {
	g                      ObligationGroup
	policies, roles, types map[string]int
}

// Diff replays reqs against the old and the new bundle (each in its own
// engine, with the same consents and clock) and reports what changed.
func Diff(ctx context.Context, oldB, newB *engine.Bundle, reqs []Request, opts DiffOptions) *Report {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Samples <= 0 {
		opts.Samples = 3
	}
	newEngine := func(b *engine.Bundle) *engine.Engine {
		e := engine.New(opts.Consents,
			engine.WithClock(func() time.Time { return opts.Now }), engine.WithRequestTime(),
			engine.WithDecisionIDs(func() string { return "" }))
		e.Activate(b)
		return e
	}
	oldE, newE := newEngine(oldB), newEngine(newB)
	r := &Report{
		Version:  ReportVersion,
		Old:      BundleRef{Name: oldB.Manifest().Name, Revision: oldB.Revision(), Digest: opts.OldDigest},
		New:      BundleRef{Name: newB.Manifest().Name, Revision: newB.Revision(), Digest: opts.NewDigest},
		Consents: opts.ConsentsNote,
		Requests: len(reqs),
	}
	groups := map[string]*groupAcc{}
	reasonGroups := map[string]*groupAcc{}
	obls := map[string]*oblAcc{}
	trans := map[[2]string]int{}
	for _, req := range reqs {
		o, n := oldE.Check(ctx, req.Msg), newE.Check(ctx, req.Msg)
		from, to := decisionName(o.GetDecision()), decisionName(n.GetDecision())
		role, typ := roles(req.Msg), req.Msg.GetResource().GetType()
		d := delta(o, n)
		sample := Sample{Line: req.Line, Request: req.JSON, OldReasons: reasonList(o), NewReasons: reasonList(n),
			OldObligations: obligationList(o), NewObligations: obligationList(n)}
		oblChange, kinds := obligationChange(o.GetObligations(), n.GetObligations())
		var into map[string]*groupAcc
		switch {
		case from != to:
			r.Changed++
			trans[[2]string{from, to}]++
			into = groups
		case oblChange != "":
			r.ObligationsChanged++
			r.ObligationKinds.add(kinds)
			key := to + "\x00" + oblChange
			a := obls[key]
			if a == nil {
				a = &oblAcc{g: ObligationGroup{Decision: to, Change: oblChange}, policies: map[string]int{}, roles: map[string]int{}, types: map[string]int{}}
				obls[key] = a
			}
			if d.key() != "" {
				a.policies[d.key()]++
			}
			a.roles[role]++
			a.types[typ]++
			addSample(&a.g.Count, &a.g.Samples, sample, opts.Samples)
			continue
		case d.key() != "":
			r.ReasonsChanged++
			into = reasonGroups
		default:
			r.Unchanged++
			continue
		}
		key := from + "\x00" + to + "\x00" + d.key()
		a := into[key]
		if a == nil {
			a = &groupAcc{g: Group{From: from, To: to, Policy: d.key()},
				reasons: map[string]int{}, consent: map[string]int{}, roles: map[string]int{}, types: map[string]int{}, obl: map[string]int{}}
			into[key] = a
		}
		if x := strings.Join(d.codes, " "); x != "" {
			a.reasons[x]++
		}
		if x := strings.Join(d.consent, " "); x != "" {
			a.consent[x]++
		}
		a.roles[role]++
		a.types[typ]++
		if to == "ALLOW" {
			for _, ob := range obligationItems(n.GetObligations()) {
				a.obl[ob]++
			}
		}
		addSample(&a.g.Count, &a.g.Samples, sample, opts.Samples)
	}
	r.Transitions = []Transition{}
	for k, c := range trans {
		r.Transitions = append(r.Transitions, Transition{From: k[0], To: k[1], Count: c})
	}
	sort.Slice(r.Transitions, func(i, j int) bool {
		a, b := r.Transitions[i], r.Transitions[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.From+a.To < b.From+b.To
	})
	r.Groups, r.ReasonGroups = finishGroups(groups), finishGroups(reasonGroups)
	r.Obligations = []ObligationGroup{}
	for _, a := range obls {
		g := a.g
		g.Policies, g.Roles, g.ResourceTypes = counts(a.policies), counts(a.roles), counts(a.types)
		r.Obligations = append(r.Obligations, g)
	}
	sort.Slice(r.Obligations, func(i, j int) bool {
		a, b := r.Obligations[i], r.Obligations[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Decision+"\x00"+a.Change < b.Decision+"\x00"+b.Change
	})
	return r
}

func finishGroups(m map[string]*groupAcc) []Group {
	out := []Group{}
	for _, a := range m {
		g := a.g
		g.Reasons, g.Consent, g.Roles, g.ResourceTypes, g.NewObligations = counts(a.reasons), counts(a.consent), counts(a.roles), counts(a.types), counts(a.obl)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return groupKey(a) < groupKey(b)
	})
	return out
}

// counts turns a tally into a list, most requests first.
func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for v, c := range m {
		out = append(out, Count{Value: v, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out
}

func (k *ObligationKinds) add(o ObligationKinds) {
	k.MaskPaths += o.MaskPaths
	k.RedactLabels += o.RedactLabels
	k.AuditTags += o.AuditTags
	k.PerEntryCheck += o.PerEntryCheck
}

func groupKey(g Group) string {
	return strings.Join([]string{g.From, g.To, g.Policy}, "\x00")
}

func addSample(count *int, samples *[]Sample, s Sample, max int) {
	*count++
	if len(*samples) < max {
		*samples = append(*samples, s)
	}
}

func decisionName(d chaperonev1.Decision) string {
	return strings.TrimPrefix(d.String(), "DECISION_")
}

func roles(req *chaperonev1.CheckRequest) string {
	r := slices.Clone(req.GetSubject().GetRoles())
	if len(r) == 0 {
		return "-"
	}
	sort.Strings(r)
	return strings.Join(slices.Compact(r), ",")
}

// reasonList renders a response's reasons as "CODE policy-id, …".
func reasonList(resp *chaperonev1.CheckResponse) string {
	parts := make([]string, 0, len(resp.GetReasons()))
	for _, r := range resp.GetReasons() {
		s := r.GetCode()
		if r.GetPolicyId() != "" {
			s += " " + r.GetPolicyId()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// obligationList renders a response's obligations, e.g. "mask
// Patient.telecom, tag DISCLOSURE", "" when it has none.
func obligationList(resp *chaperonev1.CheckResponse) string {
	return strings.Join(obligationItems(resp.GetObligations()), ", ")
}

func obligationItems(o *chaperonev1.Obligations) []string {
	var out []string
	for _, p := range o.GetMaskPaths() {
		out = append(out, "mask "+p)
	}
	for _, l := range o.GetRedactLabels() {
		out = append(out, "redact "+labelKey(l))
	}
	for _, t := range o.GetAuditTags() {
		out = append(out, "tag "+t)
	}
	if o.GetPerEntryCheck() {
		out = append(out, "perEntryCheck")
	}
	return slices.Compact(out)
}

func labelKey(c *chaperonev1.Coding) string { return c.GetSystem() + "|" + c.GetCode() }

// consentCodes are the reason codes of the consent's part in a decision;
// their policy ids are consent provisions, not policies of the bundle.
var consentCodes = []string{"CONSENT_PERMIT", "CONSENT_DENY", "CONSENT_OVERRIDDEN", "NO_CONSENT"}

// reasonDelta is how the reasons of two answers to one request differ.
type reasonDelta struct {
	policies []string // "+id", "-id": bundle policies deciding under one bundle only
	codes    []string // "+CODE", "-CODE": policy and engine reason codes given under one only
	consent  []string // "+CODE", "-CODE": consent reason codes given under one only
}

// key is the delta a group is keyed by: the policies, or when both
// bundles name the same policies, the reason codes (the consent's codes
// when only they differ); "" when the reasons are the same.
func (d reasonDelta) key() string {
	switch {
	case len(d.policies) > 0:
		return strings.Join(d.policies, " ")
	case len(d.codes) > 0:
		return strings.Join(d.codes, " ")
	}
	return strings.Join(d.consent, " ")
}

func delta(o, n *chaperonev1.CheckResponse) reasonDelta {
	split := func(resp *chaperonev1.CheckResponse) (policies, codes, consent []string) {
		for _, r := range resp.GetReasons() {
			if slices.Contains(consentCodes, r.GetCode()) {
				consent = append(consent, r.GetCode())
				continue
			}
			codes = append(codes, r.GetCode())
			if r.GetPolicyId() != "" {
				policies = append(policies, r.GetPolicyId())
			}
		}
		return policies, codes, consent
	}
	op, oc, ocs := split(o)
	np, nc, ncs := split(n)
	return reasonDelta{policies: setDelta(op, np), codes: setDelta(oc, nc), consent: setDelta(ocs, ncs)}
}

// setDelta lists "+x" for what only new has and "-x" for what only old
// has, sorted.
func setDelta(old, new []string) []string {
	var parts []string
	for _, s := range new {
		if !slices.Contains(old, s) {
			parts = append(parts, "+"+s)
		}
	}
	for _, s := range old {
		if !slices.Contains(new, s) {
			parts = append(parts, "-"+s)
		}
	}
	sort.Strings(parts)
	return slices.Compact(parts)
}

// obligationChange describes how obligations differ, e.g.
// "mask +Patient.telecom; tags -SENSITIVE", or "" when they are the same,
// and which kinds changed.
func obligationChange(o, n *chaperonev1.Obligations) (string, ObligationKinds) {
	labels := func(ob *chaperonev1.Obligations) []string {
		var out []string
		for _, l := range ob.GetRedactLabels() {
			out = append(out, labelKey(l))
		}
		return out
	}
	var (
		parts []string
		kinds ObligationKinds
	)
	for _, d := range []struct {
		name     string
		old, new []string
		count    *int
	}{
		{"mask", o.GetMaskPaths(), n.GetMaskPaths(), &kinds.MaskPaths},
		{"redact", labels(o), labels(n), &kinds.RedactLabels},
		{"tags", o.GetAuditTags(), n.GetAuditTags(), &kinds.AuditTags},
	} {
		if s := setDelta(d.old, d.new); len(s) > 0 {
			parts = append(parts, d.name+" "+strings.Join(s, " "))
			*d.count = 1
		}
	}
	if o.GetPerEntryCheck() != n.GetPerEntryCheck() {
		sign := "-"
		if n.GetPerEntryCheck() {
			sign = "+"
		}
		parts = append(parts, "perEntryCheck "+sign)
		kinds.PerEntryCheck = 1
	}
	return strings.Join(parts, "; "), kinds
}

// JSON writes the report as indented JSON (shape version [ReportVersion]).
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// legend explains the deltas of the Markdown report.
const legend = `**Legend.** ` + "`+x`" + ` is given only under the new bundle, ` + "`-x`" + ` only under the old.
*Policy delta*: x is a policy id, a permit that permits or a forbid that denies the request
under one bundle only; when both bundles name the same policies, x is a reason code that
changed (` + "`+RESEARCH_CONSENT_REQUIRED -DEIDENTIFICATION_REQUIRED`" + `). Requests are grouped by
old → new decision and policy delta; roles, resource types, reason codes and consents are
counted within a group. *Consent*: x is the part the patient's consent played:
` + "`CONSENT_PERMIT`" + ` (a consent permits), ` + "`CONSENT_DENY`" + ` (a consent denies and no policy overrides it),
` + "`CONSENT_OVERRIDDEN`" + ` (a policy overrides a consent's deny), ` + "`NO_CONSENT`" + ` (the bundle requires
a consent and none applies); both replays see the same consents, so a consent delta is the
bundle reading them differently (the consent ids are in the samples). *Change*: ` + "`mask`" + `,
` + "`redact`" + ` and ` + "`tags`" + ` list mask paths, redacted labels and audit tags added (+) or removed (-);
` + "`perEntryCheck +`" + ` is now set, ` + "`perEntryCheck -`" + ` no longer.
`

// Markdown writes the report for a pull request.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Decision impact: %s %s → %s %s\n\n", r.Old.Name, r.Old.Revision, r.New.Name, r.New.Revision)
	if r.Old.Digest != "" || r.New.Digest != "" {
		fmt.Fprintf(&b, "- old: `%s`\n- new: `%s`\n\n", orDash(r.Old.Digest), orDash(r.New.Digest))
	}
	fmt.Fprintf(&b, "Replayed **%d** requests: **%d** decisions changed", r.Requests, r.Changed)
	if len(r.Transitions) > 0 {
		parts := make([]string, len(r.Transitions))
		for i, t := range r.Transitions {
			parts[i] = fmt.Sprintf("%d %s → %s", t.Count, t.From, t.To)
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, ", **%d** the same decision for other reasons, **%d** the same decision with other obligations", r.ReasonsChanged, r.ObligationsChanged)
	if r.ObligationsChanged > 0 {
		k := r.ObligationKinds
		fmt.Fprintf(&b, " (mask paths %d, redacted labels %d, audit tags %d, perEntryCheck %d)", k.MaskPaths, k.RedactLabels, k.AuditTags, k.PerEntryCheck)
	}
	fmt.Fprintf(&b, ", %d unchanged.\n", r.Unchanged)
	if r.Consents != "" {
		fmt.Fprintf(&b, "\nConsents: %s.\n", r.Consents)
	}
	if r.Changed+r.ReasonsChanged+r.ObligationsChanged == 0 {
		b.WriteString("\nNo decision, reason or obligation changed.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("\n" + legend)
	writeGroups(&b, "Decision changes", r.Groups, true)
	writeGroups(&b, "Reason changes (same decision and obligations)", r.ReasonGroups, false)
	if len(r.Obligations) > 0 {
		b.WriteString("\n### Obligation changes (same decision)\n\n")
		b.WriteString("| decision | change | requests | policy delta | roles | resource types |\n|---|---|---:|---|---|---|\n")
		for _, g := range r.Obligations {
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s |\n", g.Decision, cell(g.Change), g.Count, countCell(g.Policies), countCell(g.Roles), countCell(g.ResourceTypes))
		}
		for _, g := range r.Obligations {
			fmt.Fprintf(&b, "\n<details><summary>%s · %s (%d)</summary>\n\n", g.Decision, g.Change, g.Count)
			writeSamples(&b, g.Samples)
			b.WriteString("</details>\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeGroups(b *strings.Builder, title string, groups []Group, decisions bool) {
	if len(groups) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### %s\n\n", title)
	head := "old → new"
	if !decisions {
		head = "decision"
	}
	fmt.Fprintf(b, "| %s | policy delta | requests | roles | resource types | consent | new obligations |\n|---|---|---:|---|---|---|---|\n", head)
	for _, g := range groups {
		fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s |\n", transition(g, decisions), cell(g.Policy), g.Count,
			countCell(g.Roles), countCell(g.ResourceTypes), countCell(g.Consent), countCell(g.NewObligations))
	}
	for _, g := range groups {
		fmt.Fprintf(b, "\n<details><summary>%s · %s (%d)</summary>\n\n", transition(g, decisions), g.Policy, g.Count)
		if len(g.Reasons) > 0 {
			fmt.Fprintf(b, "reason codes: %s\n\n", countCell(g.Reasons))
		}
		writeSamples(b, g.Samples)
		b.WriteString("</details>\n")
	}
}

func transition(g Group, decisions bool) string {
	if !decisions {
		return g.To
	}
	return g.From + " → " + g.To
}

// countCell renders counts as "`a` 3, `b` 1", "-" for none.
func countCell(cs []Count) string {
	if len(cs) == 0 {
		return "-"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %d", cell(c.Value), c.Count)
	}
	return strings.Join(parts, ", ")
}

func writeSamples(b *strings.Builder, samples []Sample) {
	for _, s := range samples {
		fmt.Fprintf(b, "line %d: old `%s`", s.Line, orDash(s.OldReasons))
		if s.OldObligations != "" {
			fmt.Fprintf(b, " with `%s`", s.OldObligations)
		}
		fmt.Fprintf(b, ", new `%s`", orDash(s.NewReasons))
		if s.NewObligations != "" {
			fmt.Fprintf(b, " with `%s`", s.NewObligations)
		}
		fmt.Fprintf(b, "\n\n```json\n%s\n```\n\n", s.Request)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell escapes a Markdown table cell.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return "`" + strings.ReplaceAll(s, "|", "\\|") + "`"
}
