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

// Report is the decision impact of replacing one bundle with another.
type Report struct {
	Old      BundleRef `json:"old"`
	New      BundleRef `json:"new"`
	Consents string    `json:"consents,omitempty"`
	// Requests replayed; Changed of them got another decision,
	// ObligationsChanged the same decision with other obligations.
	Requests           int `json:"requests"`
	Changed            int `json:"changed"`
	ObligationsChanged int `json:"obligationsChanged"`
	Unchanged          int `json:"unchanged"`
	// Transitions count changed decisions by old → new decision.
	Transitions []Transition `json:"transitions"`
	// Groups are the changed decisions, most frequent first.
	Groups []Group `json:"groups"`
	// Obligations are the changed obligations of unchanged decisions.
	Obligations []ObligationGroup `json:"obligations"`
}

// Transition counts decisions that went from one value to another.
type Transition struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
}

// Group is a set of changed decisions with the same old → new decision,
// policies, roles and resource type.
type Group struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Policy names what made the difference: "+id" for a policy (or
	// consent provision) that decides only under the new bundle, "-id" for
	// one that decided only under the old; the new reason codes when both
	// name the same policies.
	Policy       string   `json:"policy"`
	Role         string   `json:"role"`
	ResourceType string   `json:"resourceType"`
	Count        int      `json:"count"`
	Samples      []Sample `json:"samples"`
}

// ObligationGroup is a set of unchanged decisions whose obligations changed
// the same way.
type ObligationGroup struct {
	Decision     string   `json:"decision"`
	Change       string   `json:"change"`
	Role         string   `json:"role"`
	ResourceType string   `json:"resourceType"`
	Count        int      `json:"count"`
	Samples      []Sample `json:"samples"`
}

// Sample is one replayed request with both answers.
type Sample struct {
	Line       int    `json:"line"`
	Request    string `json:"request"`
	OldReasons string `json:"oldReasons"`
	NewReasons string `json:"newReasons"`
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
		Old:         BundleRef{Name: oldB.Manifest().Name, Revision: oldB.Revision(), Digest: opts.OldDigest},
		New:         BundleRef{Name: newB.Manifest().Name, Revision: newB.Revision(), Digest: opts.NewDigest},
		Consents:    opts.ConsentsNote,
		Requests:    len(reqs),
		Transitions: []Transition{},
		Groups:      []Group{},
		Obligations: []ObligationGroup{},
	}
	groups := map[string]*Group{}
	obls := map[string]*ObligationGroup{}
	trans := map[[2]string]int{}
	for _, req := range reqs {
		o, n := oldE.Check(ctx, req.Msg), newE.Check(ctx, req.Msg)
		from, to := decisionName(o.GetDecision()), decisionName(n.GetDecision())
		role, typ := roles(req.Msg), req.Msg.GetResource().GetType()
		sample := Sample{Line: req.Line, Request: req.JSON, OldReasons: reasonList(o), NewReasons: reasonList(n)}
		if from != to {
			r.Changed++
			trans[[2]string{from, to}]++
			g := Group{From: from, To: to, Policy: policyChange(o, n), Role: role, ResourceType: typ}
			key := strings.Join([]string{g.From, g.To, g.Policy, g.Role, g.ResourceType}, "\x00")
			if groups[key] == nil {
				groups[key] = &g
			}
			addSample(&groups[key].Count, &groups[key].Samples, sample, opts.Samples)
			continue
		}
		if change := obligationChange(o.GetObligations(), n.GetObligations()); change != "" {
			r.ObligationsChanged++
			g := ObligationGroup{Decision: to, Change: change, Role: role, ResourceType: typ}
			key := strings.Join([]string{g.Decision, g.Change, g.Role, g.ResourceType}, "\x00")
			if obls[key] == nil {
				obls[key] = &g
			}
			addSample(&obls[key].Count, &obls[key].Samples, sample, opts.Samples)
			continue
		}
		r.Unchanged++
	}
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
	for _, g := range groups {
		r.Groups = append(r.Groups, *g)
	}
	sort.Slice(r.Groups, func(i, j int) bool {
		a, b := r.Groups[i], r.Groups[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return groupKey(a) < groupKey(b)
	})
	for _, g := range obls {
		r.Obligations = append(r.Obligations, *g)
	}
	sort.Slice(r.Obligations, func(i, j int) bool {
		a, b := r.Obligations[i], r.Obligations[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Decision+a.Change+a.Role+a.ResourceType < b.Decision+b.Change+b.Role+b.ResourceType
	})
	return r
}

func groupKey(g Group) string {
	return strings.Join([]string{g.From, g.To, g.Policy, g.Role, g.ResourceType}, "\x00")
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

func policyIDs(resp *chaperonev1.CheckResponse) map[string]bool {
	out := map[string]bool{}
	for _, r := range resp.GetReasons() {
		if r.GetPolicyId() != "" {
			out[r.GetPolicyId()] = true
		}
	}
	return out
}

// policyChange names the policies that decide under only one of the
// bundles.
func policyChange(o, n *chaperonev1.CheckResponse) string {
	op, np := policyIDs(o), policyIDs(n)
	var parts []string
	for id := range np {
		if !op[id] {
			parts = append(parts, "+"+id)
		}
	}
	for id := range op {
		if !np[id] {
			parts = append(parts, "-"+id)
		}
	}
	if len(parts) == 0 {
		for _, r := range n.GetReasons() {
			parts = append(parts, r.GetCode())
		}
	}
	sort.Strings(parts)
	return strings.Join(slices.Compact(parts), " ")
}

// obligationChange describes how obligations differ, e.g.
// "mask +Patient.telecom; tags -SENSITIVE", or "" when they are the same.
func obligationChange(o, n *chaperonev1.Obligations) string {
	labels := func(ob *chaperonev1.Obligations) []string {
		var out []string
		for _, l := range ob.GetRedactLabels() {
			out = append(out, l.GetSystem()+"|"+l.GetCode())
		}
		return out
	}
	var parts []string
	for _, d := range []struct {
		name     string
		old, new []string
	}{
		{"mask", o.GetMaskPaths(), n.GetMaskPaths()},
		{"redact", labels(o), labels(n)},
		{"tags", o.GetAuditTags(), n.GetAuditTags()},
	} {
		if s := setChange(d.old, d.new); s != "" {
			parts = append(parts, d.name+" "+s)
		}
	}
	return strings.Join(parts, "; ")
}

func setChange(old, new []string) string {
	in := func(list []string, s string) bool { return slices.Contains(list, s) }
	var parts []string
	for _, s := range new {
		if !in(old, s) {
			parts = append(parts, "+"+s)
		}
	}
	for _, s := range old {
		if !in(new, s) {
			parts = append(parts, "-"+s)
		}
	}
	sort.Strings(parts)
	return strings.Join(slices.Compact(parts), " ")
}

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

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
	fmt.Fprintf(&b, ", %d obligation changes, %d unchanged.\n", r.ObligationsChanged, r.Unchanged)
	if r.Consents != "" {
		fmt.Fprintf(&b, "\nConsents: %s.\n", r.Consents)
	}

	if len(r.Groups) > 0 {
		b.WriteString("\n### Decision changes\n\n")
		b.WriteString("| old → new | policy | role | resource type | requests |\n|---|---|---|---|---:|\n")
		for _, g := range r.Groups {
			fmt.Fprintf(&b, "| %s → %s | %s | %s | %s | %d |\n", g.From, g.To, cell(g.Policy), cell(g.Role), cell(g.ResourceType), g.Count)
		}
		for _, g := range r.Groups {
			fmt.Fprintf(&b, "\n<details><summary>%s → %s · %s · %s · %s (%d)</summary>\n\n", g.From, g.To, g.Policy, g.Role, g.ResourceType, g.Count)
			writeSamples(&b, g.Samples)
			b.WriteString("</details>\n")
		}
	}
	if len(r.Obligations) > 0 {
		b.WriteString("\n### Obligation changes\n\n")
		b.WriteString("| decision | change | role | resource type | requests |\n|---|---|---|---|---:|\n")
		for _, g := range r.Obligations {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", g.Decision, cell(g.Change), cell(g.Role), cell(g.ResourceType), g.Count)
		}
		for _, g := range r.Obligations {
			fmt.Fprintf(&b, "\n<details><summary>%s · %s · %s · %s (%d)</summary>\n\n", g.Decision, g.Change, g.Role, g.ResourceType, g.Count)
			writeSamples(&b, g.Samples)
			b.WriteString("</details>\n")
		}
	}
	if r.Changed == 0 && r.ObligationsChanged == 0 {
		b.WriteString("\nNo decision or obligation changed.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSamples(b *strings.Builder, samples []Sample) {
	for _, s := range samples {
		fmt.Fprintf(b, "line %d: old `%s`, new `%s`\n\n```json\n%s\n```\n\n", s.Line, orDash(s.OldReasons), orDash(s.NewReasons), s.Request)
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
