package policytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// SuiteSuffix is how the name of a suite file ends.
const SuiteSuffix = "_test.yaml"

// SuiteError is a problem in a suite file: it cannot be read or parsed, a
// field is unknown or missing, or a request breaks the API's rules.
type SuiteError struct {
	File string
	Line int // 0 when the whole file is concerned
	Err  error
}

func (e *SuiteError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *SuiteError) Unwrap() error { return e.Err }

// Suite is one parsed suite file.
type Suite struct {
	Name     string
	File     string // path of the suite file
	Now      time.Time
	Fixtures Fixtures
	Tests    []Case
}

// Fixtures are the files a suite loads into the in-memory stores, as paths
// resolved against the suite file's directory.
type Fixtures struct {
	Consents   []string
	Grants     []string
	Agreements []string
	// Relationships are treating relationship files (YAML lists).
	Relationships []string
}

// Case is one test of a suite.
type Case struct {
	Name    string
	Line    int
	Request *chaperonev1.CheckRequest
	Want    Want
	Skip    string
}

// Want is what a test expects of the response.
type Want struct {
	// Decision is "ALLOW" or "DENY".
	Decision string
	// Reasons must each be among the response's reasons; an empty
	// PolicyID matches any.
	Reasons []WantReason
	// Obligations must each be among the response's obligations.
	Obligations *chaperonev1.Obligations
	// ExactReasons: the response has no reason beyond Reasons.
	ExactReasons bool
	// ExactObligations: the response has no obligation beyond Obligations
	// (none at all when Obligations is nil). It sets every Exact field of
	// the obligation kinds below.
	ExactObligations bool
	// ExactMaskPaths, ExactAuditTags, ExactRedactLabels: the response has
	// no obligation of that kind beyond those in Obligations (none when
	// Obligations lists none); ExactPerEntryCheck: perEntryCheck is what
	// Obligations says (false when not given).
	ExactMaskPaths, ExactAuditTags, ExactRedactLabels, ExactPerEntryCheck bool
	// Absent lists what the response must not carry.
	Absent Absent
}

// Absent is what a response must not carry: no reason matching one of
// Reasons, none of the mask paths, audit tags or redacted labels listed.
type Absent struct {
	Reasons      []WantReason
	MaskPaths    []string
	AuditTags    []string
	RedactLabels []*chaperonev1.Coding
}

// exactKinds are the values of want.exact.
var exactKinds = []string{"reasons", "obligations", "maskPaths", "auditTags", "redactLabels", "perEntryCheck"}

// WantReason is one expected reason.
type WantReason struct {
	Code     string `yaml:"code"`
	PolicyID string `yaml:"policyId"`
}

func (r WantReason) String() string {
	if r.PolicyID == "" {
		return r.Code
	}
	return r.Code + "@" + r.PolicyID
}

// DefaultNow is the clock of a suite that does not set now (a Wednesday,
// 12:00 in New York), for requests without context.time.
func DefaultNow() time.Time { return time.Date(2025, 1, 15, 17, 0, 0, 0, time.UTC) }

// FindSuites lists the suite files under dir in lexical order, skipping
// hidden directories and testdata.
func FindSuites(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), SuiteSuffix) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find suites: %w", err)
	}
	sort.Strings(files)
	return files, nil
}

// ParseSuite reads one suite file. Every problem found is reported, as
// [*SuiteError] values joined with errors.Join.
func ParseSuite(file string, v *validation.Validator) (*Suite, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, &SuiteError{File: file, Err: err}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, &SuiteError{File: file, Line: yamlErrorLine(err), Err: err}
	}
	p := &parser{file: file, v: v}
	s := p.suite(&doc)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return s, nil
}

type parser struct {
	file string
	v    *validation.Validator
	errs []error
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &SuiteError{File: p.file, Line: line, Err: fmt.Errorf(format, args...)})
}

// fields checks that n is a mapping with only the known keys and returns
// its values by key.
func (p *parser) fields(n *yaml.Node, what string, known ...string) map[string]*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping", what)
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			for key, v := range p.fields(val, what, known...) {
				if _, set := out[key]; !set {
					out[key] = v
				}
			}
			continue
		}
		found := false
		for _, kn := range known {
			found = found || kn == k.Value
		}
		if !found {
			p.errorf(k, "%s: unknown field %q (want one of %s)", what, k.Value, strings.Join(known, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.errorf(k, "%s: field %q given twice", what, k.Value)
		}
		out[k.Value] = val
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else {
			n = n.Content[0]
		}
	}
	return n
}

func (p *parser) str(n *yaml.Node, what string) string {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s must be a string", what)
		return ""
	}
	return n.Value
}

func (p *parser) strings(n *yaml.Node, what string) []string {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list of strings", what)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		out = append(out, p.str(c, what))
	}
	return out
}

func (p *parser) suite(doc *yaml.Node) *Suite {
	if doc.Kind == 0 {
		p.errorf(nil, "empty suite")
		return nil
	}
	root := resolve(doc)
	f := p.fields(root, "suite", "name", "now", "fixtures", "tests")
	if f == nil {
		return nil
	}
	s := &Suite{File: p.file, Now: DefaultNow()}
	if n, ok := f["name"]; ok {
		s.Name = p.str(n, "name")
	} else {
		p.errorf(root, "suite: name is required")
	}
	if n, ok := f["now"]; ok {
		t, err := time.Parse(time.RFC3339, p.str(n, "now"))
		if err != nil {
			p.errorf(n, "now: want an RFC 3339 time: %v", err)
		}
		s.Now = t
	}
	if n, ok := f["fixtures"]; ok {
		s.Fixtures = p.fixtures(n)
	}
	tests, ok := f["tests"]
	if !ok {
		p.errorf(root, "suite: tests is required")
		return s
	}
	tests = resolve(tests)
	if tests.Kind != yaml.SequenceNode {
		p.errorf(tests, "tests must be a list")
		return s
	}
	names := map[string]int{}
	for _, tn := range tests.Content {
		c := p.test(tn)
		if c == nil {
			continue
		}
		if prev, dup := names[c.Name]; dup {
			p.errorf(tn, "test %q: name also used at line %d", c.Name, prev)
		}
		names[c.Name] = c.Line
		s.Tests = append(s.Tests, *c)
	}
	return s
}

func (p *parser) fixtures(n *yaml.Node) Fixtures {
	f := p.fields(n, "fixtures", "consents", "grants", "agreements", "relationships")
	dir := filepath.Dir(p.file)
	paths := func(key string) []string {
		v, ok := f[key]
		if !ok {
			return nil
		}
		var out []string
		for _, s := range p.strings(v, "fixtures."+key) {
			path := s
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			if _, err := os.Stat(path); err != nil {
				p.errorf(v, "fixtures.%s: %v", key, err)
			}
			out = append(out, path)
		}
		return out
	}
	return Fixtures{Consents: paths("consents"), Grants: paths("grants"), Agreements: paths("agreements"), Relationships: paths("relationships")}
}

func (p *parser) test(n *yaml.Node) *Case {
	n = resolve(n)
	f := p.fields(n, "test", "name", "request", "want", "skip")
	if f == nil {
		return nil
	}
	c := &Case{Line: n.Line}
	if v, ok := f["name"]; ok {
		c.Name = p.str(v, "test name")
	}
	if c.Name == "" {
		p.errorf(n, "test: name is required")
	}
	what := fmt.Sprintf("test %q", c.Name)
	if v, ok := f["skip"]; ok {
		c.Skip = p.str(v, what+": skip")
		if c.Skip == "" {
			c.Skip = "skipped"
		}
	}
	if v, ok := f["request"]; ok {
		c.Request = p.request(v, what)
	} else {
		p.errorf(n, "%s: request is required", what)
	}
	if v, ok := f["want"]; ok {
		c.Want = p.want(v, what)
	} else {
		p.errorf(n, "%s: want is required", what)
	}
	return c
}

// request turns the YAML request into its JSON form and decodes it with the
// API's own decoder and rules, so a suite can only hold requests a caller
// could send.
func (p *parser) request(n *yaml.Node, what string) *chaperonev1.CheckRequest {
	var v any
	if err := n.Decode(&v); err != nil {
		p.errorf(n, "%s: request: %v", what, err)
		return nil
	}
	raw, err := json.Marshal(jsonable(v))
	if err != nil {
		p.errorf(n, "%s: request: %v", what, err)
		return nil
	}
	req := &chaperonev1.CheckRequest{}
	if err := p.v.DecodeJSON(raw, req); err != nil {
		p.errorf(n, "%s: request: %v", what, err)
		return nil
	}
	return req
}

// jsonable converts what yaml.v3 decodes into values encoding/json accepts:
// times become RFC 3339 strings, maps with non-string keys are stringified.
func jsonable(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.Format(time.RFC3339Nano)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonable(e)
		}
		return out
	}
	return v
}

func (p *parser) want(n *yaml.Node, what string) Want {
	f := p.fields(n, what+": want", "decision", "reasons", "obligations", "exact", "absent")
	var w Want
	if v, ok := f["exact"]; ok {
		for _, e := range p.strings(v, what+": exact") {
			switch e {
			case "reasons":
				w.ExactReasons = true
			case "obligations":
				w.ExactObligations = true
				w.ExactMaskPaths, w.ExactAuditTags, w.ExactRedactLabels, w.ExactPerEntryCheck = true, true, true, true
			case "maskPaths":
				w.ExactMaskPaths = true
			case "auditTags":
				w.ExactAuditTags = true
			case "redactLabels":
				w.ExactRedactLabels = true
			case "perEntryCheck":
				w.ExactPerEntryCheck = true
			default:
				p.errorf(v, "%s: exact: %q is not one of %s", what, e, strings.Join(exactKinds, ", "))
			}
		}
	}
	if v, ok := f["decision"]; ok {
		w.Decision = strings.ToUpper(strings.TrimPrefix(p.str(v, what+": decision"), "DECISION_"))
		if w.Decision != "ALLOW" && w.Decision != "DENY" {
			p.errorf(v, "%s: decision must be ALLOW or DENY, got %q", what, w.Decision)
		}
	} else {
		p.errorf(n, "%s: want.decision is required", what)
	}
	if v, ok := f["reasons"]; ok {
		w.Reasons = p.reasons(v, what)
	}
	if v, ok := f["obligations"]; ok {
		of := p.fields(v, what+": obligations", "maskPaths", "auditTags", "redactLabels", "perEntryCheck")
		o := &chaperonev1.Obligations{}
		if pe, ok := of["perEntryCheck"]; ok {
			switch b := p.str(pe, what+": perEntryCheck"); b {
			case "true", "false":
				o.PerEntryCheck = b == "true"
			default:
				p.errorf(pe, "%s: perEntryCheck must be true or false, got %q", what, b)
			}
		}
		if m, ok := of["maskPaths"]; ok {
			o.MaskPaths = p.strings(m, what+": maskPaths")
		}
		if t, ok := of["auditTags"]; ok {
			o.AuditTags = p.strings(t, what+": auditTags")
		}
		if l, ok := of["redactLabels"]; ok {
			o.RedactLabels = p.labels(l, what)
		}
		w.Obligations = o
	}
	if v, ok := f["absent"]; ok {
		af := p.fields(v, what+": absent", "reasons", "maskPaths", "auditTags", "redactLabels")
		if r, ok := af["reasons"]; ok {
			w.Absent.Reasons = p.reasons(r, what+": absent")
		}
		if m, ok := af["maskPaths"]; ok {
			w.Absent.MaskPaths = p.strings(m, what+": absent.maskPaths")
		}
		if t, ok := af["auditTags"]; ok {
			w.Absent.AuditTags = p.strings(t, what+": absent.auditTags")
		}
		if l, ok := af["redactLabels"]; ok {
			w.Absent.RedactLabels = p.labels(l, what+": absent")
		}
	}
	return w
}

// reasons parses a list of reasons: codes, or {code, policyId} mappings.
func (p *parser) reasons(v *yaml.Node, what string) []WantReason {
	v = resolve(v)
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, "%s: reasons must be a list", what)
		return nil
	}
	var out []WantReason
	for _, rn := range v.Content {
		rn = resolve(rn)
		switch rn.Kind {
		case yaml.ScalarNode:
			out = append(out, WantReason{Code: rn.Value})
		case yaml.MappingNode:
			rf := p.fields(rn, what+": reason", "code", "policyId")
			var r WantReason
			if c, ok := rf["code"]; ok {
				r.Code = p.str(c, what+": reason code")
			}
			if id, ok := rf["policyId"]; ok {
				r.PolicyID = p.str(id, what+": reason policyId")
			}
			if r.Code == "" && r.PolicyID == "" {
				p.errorf(rn, "%s: a reason needs a code or a policyId", what)
			}
			out = append(out, r)
		default:
			p.errorf(rn, "%s: a reason is a code or {code, policyId}", what)
		}
	}
	return out
}

// labels parses a list of {system, code} codings.
func (p *parser) labels(l *yaml.Node, what string) []*chaperonev1.Coding {
	l = resolve(l)
	if l.Kind != yaml.SequenceNode {
		p.errorf(l, "%s: redactLabels must be a list of {system, code}", what)
		return nil
	}
	var out []*chaperonev1.Coding
	for _, ln := range l.Content {
		lf := p.fields(ln, what+": redactLabel", "system", "code")
		c := &chaperonev1.Coding{}
		if s, ok := lf["system"]; ok {
			c.System = p.str(s, what+": system")
		}
		if s, ok := lf["code"]; ok {
			c.Code = p.str(s, what+": code")
		}
		out = append(out, c)
	}
	return out
}

// yamlErrorLine finds the line number yaml.v3 puts in its messages
// ("yaml: line 7: ...").
func yamlErrorLine(err error) int {
	msg := err.Error()
	i := strings.Index(msg, "line ")
	if i < 0 {
		return 0
	}
	n := 0
	for _, ch := range msg[i+5:] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}
