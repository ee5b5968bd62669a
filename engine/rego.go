package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// The rules a Rego package defines to take part in decisions.
const (
	regoPermit      = "permit"
	regoDeny        = "deny"
	regoObligations = "obligations"
	// regoObligationsOnly is the obligation-only rule: an object like
	// obligations whose obligations join an ALLOW whenever it is
	// defined, without the package permitting anything.
	regoObligationsOnly = "obligations_only"
)

// combinePackage is the package of the module the engine generates to read
// every participating package's rules in one query.
const combinePackage = "chaperoneinternal"

// regoLayer evaluates the bundle's Rego modules through one prepared query.
type regoLayer struct {
	query    rego.PreparedEvalQuery
	packages []string
	ids      []string
	consts   *regoConsts
	// keyPaths are the input paths the modules read, when they read
	// nothing else (see regoInputPaths); nil: results are not remembered.
	keyPaths regoKeyPaths
	leaves   []regoLeaf // getters of the key paths; nil: keys from the whole input
	// deterministic is false when a module calls a nondeterministic
	// builtin: then no outcome of the bundle may be remembered.
	deterministic bool
}

// regoConsts are input sub-documents most requests share, built once per
// bundle: input.consent for each consent decision, and input.facts without
// a grant, an agreement or scope levels. Terms are immutable once built
// (OPA shares its interned terms the same way), so one copy serves every
// evaluation and saves building three of the input's eight objects.
type regoConsts struct {
	consent map[ConsentDecision]*ast.Term // by decision, namesSubject false
	facts   [2][2][2][2]*ast.Term         // [scopes.present][scopes.allows][sameOrganization][population]
}

func newRegoConsts() *regoConsts {
	c := &regoConsts{consent: map[ConsentDecision]*ast.Term{}}
	for _, d := range []ConsentDecision{ConsentPermit, ConsentDeny, ConsentNoConsent} {
		c.consent[d] = consentTerm(&facts{consent: d})
	}
	bools := []bool{false, true}
	for _, present := range bools {
		for _, allows := range bools {
			for _, same := range bools {
				for _, pop := range bools {
					c.facts[b2i(present)][b2i(allows)][b2i(same)][b2i(pop)] = factsTerm(&facts{
						scopes: scopeFacts{present: present, allows: allows}, sameOrganization: same, population: pop})
				}
			}
		}
	}
	return c
}

func (c *regoConsts) consentOf(f *facts) *ast.Term {
	d := &f.deciding
	if t, ok := c.consent[f.consent]; ok && !f.consentNamesSubject && !f.consentNamesRecipient && !f.consentRestrictsRecipient &&
		d.ID == "" && d.Provision == "" && d.Scope == "" && len(d.Categories) == 0 && len(d.Purposes) == 0 {
		return t
	}
	return consentTerm(f)
}

func (c *regoConsts) factsOf(f *facts) *ast.Term {
	a := &f.agreement
	if !f.grant && !f.treating && len(f.scopes.levels) == 0 && !a.exists && !a.active && !a.covers &&
		a.vendor == "" && a.tier == "" && len(a.purposes) == 0 && len(a.resourceTypes) == 0 {
		return c.facts[b2i(f.scopes.present)][b2i(f.scopes.allows)][b2i(f.sameOrganization)][b2i(f.population)]
	}
	return factsTerm(f)
}

// compileRego compiles the Rego modules; problems are what the static
// checks found (type errors against the input schema of model when it is
// not nil, reason codes), ids the literal policy ids of permit and deny rules
// by package, err a module that does not compile.
func compileRego(fsys fs.FS, files, dataFiles []string, model *PolicyModel) (*regoLayer, []Problem, map[string][]regoID, error) {
	var schema *ast.SchemaSet
	if model != nil {
		var err error
		if schema, err = model.regoSchemaSet(); err != nil {
			return nil, nil, nil, err
		}
	}
	modules := map[string]*ast.Module{}
	var problems []Problem
	ids := map[string][]regoID{}
	rules := map[string]map[string]bool{} // package → participating rules defined
	for _, file := range files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		src, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read %s: %w", file, err)
		}
		m, err := ast.ParseModuleWithOpts(file, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, nil, nil, &CompileError{File: file, Err: err}
		}
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if pkg == combinePackage {
			return nil, nil, nil, &CompileError{File: file, Err: fmt.Errorf("package %s is reserved", combinePackage)}
		}
		modules[file] = m
		problems = append(problems, checkRegoRules(file, pkg, m, ids)...)
		if model != nil && model.Roles != nil {
			problems = append(problems, regoUnknownRoles(file, m, model.Roles)...)
		}
		for _, r := range m.Rules {
			ref := r.Head.Ref()
			if len(ref) != 1 {
				continue
			}
			name := ref[0].Value.(ast.Var).String()
			if name == regoPermit || name == regoDeny || name == regoObligations || name == regoObligationsOnly {
				if rules[pkg] == nil {
					rules[pkg] = map[string]bool{}
				}
				rules[pkg][name] = true
			}
		}
	}
	problems = append(problems, regoMaskProblems(modules)...)
	if len(rules) == 0 {
		return nil, problems, ids, nil
	}
	pkgs := make([]string, 0, len(rules))
	for p := range rules {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)

	// The generated module: one entry per package, empty where a rule is absent.
	var b strings.Builder
	fmt.Fprintf(&b, "package %s\n\n", combinePackage)
	for i, p := range pkgs {
		ref := "data." + p
		if rules[p][regoObligations] {
			// Obligations only matter when the package permits: evaluate
			// them only then.
			cond := "false"
			if rules[p][regoPermit] {
				cond = fmt.Sprintf("count(%s.%s) > 0", ref, regoPermit)
			}
			fmt.Fprintf(&b, "default o%d := {}\n\no%d := %s.%s if %s\n\n", i, i, ref, regoObligations, cond)
		}
		if rules[p][regoObligationsOnly] {
			fmt.Fprintf(&b, "default oo%d := {}\n\noo%d := %s.%s\n\n", i, i, ref, regoObligationsOnly)
		}
	}
	b.WriteString("result := [\n")
	for i, p := range pkgs {
		permitRef, denyRef, oblRef, onlyRef := "set()", "set()", "{}", "{}"
		if rules[p][regoPermit] {
			permitRef = "data." + p + "." + regoPermit
		}
		if rules[p][regoDeny] {
			denyRef = "data." + p + "." + regoDeny
		}
		if rules[p][regoObligations] {
			oblRef = fmt.Sprintf("o%d", i)
		}
		if rules[p][regoObligationsOnly] {
			onlyRef = fmt.Sprintf("oo%d", i)
		}
		fmt.Fprintf(&b, "\t[%s, %s, %s, %s],\n", permitRef, denyRef, oblRef, onlyRef)
	}
	b.WriteString("]\n")
	combine, err := ast.ParseModuleWithOpts("chaperone-combine.rego", b.String(), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate rego combining module: %w", err)
	}

	data := map[string]any{}
	for _, file := range dataFiles {
		raw, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read %s: %w", file, err)
		}
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, nil, nil, &CompileError{File: file, Err: err}
		}
		data[strings.TrimSuffix(path.Base(file), ".json")] = doc
	}

	opts := []func(*rego.Rego){
		rego.Query("data." + combinePackage + ".result"),
		rego.ParsedModule(combine),
		rego.Store(inmem.NewFromObject(data)),
		rego.StrictBuiltinErrors(true),
		rego.SetRegoVersion(ast.RegoV1),
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }),
	}
	for _, m := range modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	// The compiler as rego.New would make it, kept to read the types it
	// inferred (orderingMismatches).
	compiler := ast.NewCompiler().WithSchemas(schema).WithUseTypeCheckAnnotations(true).WithDefaultRegoVersion(ast.RegoV1)
	pq, err := rego.New(append(opts, rego.Compiler(compiler))...).PrepareForEval(context.Background())
	if err != nil && schema != nil {
		if typeErrs := regoTypeErrors(err); typeErrs != nil {
			// Type errors: those the input schema causes are problems;
			// a module with type errors of its own does not compile.
			if _, plain := rego.New(opts...).PrepareForEval(context.Background()); plain == nil {
				return nil, append(problems, typeErrs...), ids, nil
			}
		}
	}
	if err != nil {
		return nil, nil, nil, &CompileError{File: "rego", Err: err}
	}
	if schema != nil {
		problems = append(problems, orderingMismatches(compiler, modules, model.Input)...)
	}
	if len(problems) > 0 {
		return nil, problems, ids, nil
	}
	l := &regoLayer{query: pq, packages: pkgs, ids: pkgs, consts: newRegoConsts()}
	all := make([]*ast.Module, 0, len(modules))
	for _, m := range modules {
		all = append(all, m)
	}
	paths, keyed, deterministic := regoInputPaths(all)
	l.deterministic = deterministic
	if keyed && deterministic {
		l.keyPaths = newRegoKeyPaths(paths)
		l.leaves = leavesFor(paths)
	}
	return l, nil, ids, nil
}

func (l *regoLayer) name() string { return "rego" }

func (l *regoLayer) policyIDs() []string { return l.ids }

func (l *regoLayer) evaluate(ctx context.Context, f *facts) (layerResult, error) {
	return l.eval(ctx, regoInput(f, l.consts))
}

func (l *regoLayer) eval(ctx context.Context, input ast.Value) (layerResult, error) {
	rs, err := l.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return layerResult{}, fmt.Errorf("rego: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return layerResult{}, fmt.Errorf("rego: query was undefined")
	}
	arr, ok := rs[0].Expressions[0].Value.(*ast.Array)
	if !ok || arr.Len() != len(l.packages) {
		return layerResult{}, fmt.Errorf("rego: unexpected result %v", rs[0].Expressions[0].Value)
	}
	var r layerResult
	for i, pkg := range l.packages {
		entry := arr.Elem(i).Value.(*ast.Array)
		permits, err := regoPermits(pkg, entry.Elem(0).Value)
		if err != nil {
			return layerResult{}, err
		}
		denies, err := regoDenies(pkg, entry.Elem(1).Value)
		if err != nil {
			return layerResult{}, err
		}
		r.denies = append(r.denies, denies...)
		if len(permits) > 0 {
			r.permits = append(r.permits, permits...)
			if err := regoObligationsInto(&r.obligations, pkg, entry.Elem(2).Value); err != nil {
				return layerResult{}, err
			}
		}
		if only, ok := entry.Elem(3).Value.(ast.Object); !ok || only.Len() > 0 {
			if err := regoObligationsInto(&r.obligations, pkg, entry.Elem(3).Value); err != nil {
				return layerResult{}, fmt.Errorf("%w (obligations_only)", err)
			}
			r.obligationOnly = append(r.obligationOnly, pkg+"."+regoObligationsOnly)
		}
	}
	switch {
	case len(r.denies) > 0:
		r.effect = deny
		r.permits, r.obligations, r.obligationOnly = nil, obligations{}, nil
	case len(r.permits) > 0:
		r.effect = permit
	}
	return r, nil
}

func regoPermits(pkg string, v ast.Value) ([]permitHit, error) {
	set, ok := v.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("rego: %s.permit must be a set, got %s", pkg, ast.ValueName(v))
	}
	var out []permitHit
	var err error
	set.Foreach(func(t *ast.Term) {
		switch e := t.Value.(type) {
		case ast.String:
			out = append(out, permitHit{id: string(e)})
		case ast.Object:
			h := permitHit{id: objString(e, "id"), overridesConsent: objBool(e, "overridesConsent")}
			if h.id == "" {
				err = fmt.Errorf("rego: %s.permit entry %v has no id", pkg, e)
			}
			out = append(out, h)
		default:
			err = fmt.Errorf("rego: %s.permit entries must be ids or objects, got %s", pkg, ast.ValueName(t.Value))
		}
	})
	sortHits(out)
	return out, err
}

func regoDenies(pkg string, v ast.Value) ([]denyHit, error) {
	set, ok := v.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("rego: %s.deny must be a set, got %s", pkg, ast.ValueName(v))
	}
	var out []denyHit
	var err error
	set.Foreach(func(t *ast.Term) {
		switch e := t.Value.(type) {
		case ast.String:
			out = append(out, denyHit{id: string(e), code: "POLICY_FORBID"})
		case ast.Object:
			h := denyHit{id: objString(e, "id"), code: objString(e, "code"), message: objString(e, "message")}
			if h.id == "" {
				err = fmt.Errorf("rego: %s.deny entry %v has no id", pkg, e)
			}
			if h.code == "" {
				h.code = "POLICY_FORBID"
			}
			out = append(out, h)
		default:
			err = fmt.Errorf("rego: %s.deny entries must be ids or objects, got %s", pkg, ast.ValueName(t.Value))
		}
	})
	return out, err
}

func regoObligationsInto(o *obligations, pkg string, v ast.Value) error {
	obj, ok := v.(ast.Object)
	if !ok {
		return fmt.Errorf("rego: %s.obligations must be an object, got %s", pkg, ast.ValueName(v))
	}
	var err error
	each := func(key string, fn func(*ast.Term)) {
		t := obj.Get(ast.StringTerm(key))
		if t == nil {
			return
		}
		switch c := t.Value.(type) {
		case *ast.Array:
			c.Foreach(fn)
		case ast.Set:
			c.Foreach(fn)
		default:
			err = fmt.Errorf("rego: %s.obligations.%s must be an array or set", pkg, key)
		}
	}
	each("maskPaths", func(t *ast.Term) {
		s, ok := t.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("rego: %s.obligations.maskPaths: %v is not a string", pkg, t)
			return
		}
		// Paths computed at run time are checked here: an ALLOW must not
		// carry a mask the enforcement side cannot apply.
		if e := checkMaskPath(string(s)); e != nil {
			err = fmt.Errorf("rego: %s.obligations: %w", pkg, e)
			return
		}
		o.addMask(string(s))
	})
	each("auditTags", func(t *ast.Term) {
		if s, ok := t.Value.(ast.String); ok {
			o.addTag(string(s))
		}
	})
	each("redactLabels", func(t *ast.Term) {
		if lo, ok := t.Value.(ast.Object); ok {
			o.addLabel(label{objString(lo, "system"), objString(lo, "code")})
		}
	})
	return err
}

func objString(o ast.Object, key string) string {
	if t := o.Get(ast.StringTerm(key)); t != nil {
		if s, ok := t.Value.(ast.String); ok {
			return string(s)
		}
	}
	return ""
}

func objBool(o ast.Object, key string) bool {
	if t := o.Get(ast.StringTerm(key)); t != nil {
		if b, ok := t.Value.(ast.Boolean); ok {
			return bool(b)
		}
	}
	return false
}

func sortHits(hs []permitHit) {
	sort.Slice(hs, func(i, j int) bool { return hs[i].id < hs[j].id })
}

// regoInput builds the Rego input document directly as an ast.Value, in the
// proto3 JSON shape of the request with every field present.
func regoInput(f *facts, consts *regoConsts) ast.Value {
	req := f.req
	s := req.GetSubject()
	res := req.GetResource()
	c := req.GetContext()
	date := regoDate(res)
	return ast.NewObject(
		ast.Item(ast.InternedTerm("subject"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("id"), ast.StringTerm(s.GetId())),
			ast.Item(ast.InternedTerm("kind"), ast.StringTerm(s.GetKind())),
			ast.Item(ast.InternedTerm("identifiers"), identifiersTerm(s.GetIdentifiers())),
			ast.Item(ast.InternedTerm("roles"), stringsTerm(s.GetRoles())),
			ast.Item(ast.InternedTerm("organization"), ast.StringTerm(s.GetOrganization())),
			ast.Item(ast.InternedTerm("organizationIdentifiers"), identifiersTerm(s.GetOrganizationIdentifiers())),
			ast.Item(ast.InternedTerm("scopes"), stringsTerm(s.GetScopes())),
			ast.Item(ast.InternedTerm("clientId"), ast.StringTerm(s.GetClientId())),
			ast.Item(ast.InternedTerm("launchPatient"), ast.StringTerm(s.GetLaunchPatient())),
		)),
		ast.Item(ast.InternedTerm("action"), ast.StringTerm(req.GetAction())),
		ast.Item(ast.InternedTerm("resource"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("type"), ast.StringTerm(res.GetType())),
			ast.Item(ast.InternedTerm("id"), ast.StringTerm(res.GetId())),
			ast.Item(ast.InternedTerm("patient"), ast.StringTerm(res.GetPatient())),
			ast.Item(ast.InternedTerm("securityLabels"), codingsTerm(res.GetSecurityLabels())),
			ast.Item(ast.InternedTerm("codes"), codingsTerm(res.GetCodes())),
			ast.Item(ast.InternedTerm("categories"), codingsTerm(res.GetCategories())),
			ast.Item(ast.InternedTerm("organization"), ast.StringTerm(res.GetOrganization())),
			ast.Item(ast.InternedTerm("author"), ast.StringTerm(res.GetAuthor())),
			ast.Item(ast.InternedTerm("date"), ast.StringTerm(date)),
			ast.Item(ast.InternedTerm("profiles"), stringsTerm(res.GetProfiles())),
		)),
		ast.Item(ast.InternedTerm("purposeOfUse"), ast.StringTerm(req.GetPurposeOfUse())),
		ast.Item(ast.InternedTerm("context"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("time"), ast.StringTerm(regoTime(f.at))),
			ast.Item(ast.InternedTerm("hour"), ast.InternedTerm(f.hour)),
			ast.Item(ast.InternedTerm("localTime"), localTimeTerm(f)),
			ast.Item(ast.InternedTerm("breakGlassReason"), ast.StringTerm(c.GetBreakGlassReason())),
			ast.Item(ast.InternedTerm("ip"), ast.StringTerm(c.GetIp())),
			ast.Item(ast.InternedTerm("networkZone"), ast.StringTerm(c.GetNetworkZone())),
			ast.Item(ast.InternedTerm("deviceTrust"), ast.StringTerm(c.GetDeviceTrust())),
			ast.Item(ast.InternedTerm("phase"), ast.StringTerm(phaseOf(req))),
		)),
		ast.Item(ast.InternedTerm("consent"), consts.consentOf(f)),
		ast.Item(ast.InternedTerm("facts"), consts.factsOf(f)),
	)
}

// regoDate is input.resource.date: RFC 3339 in UTC, or "" without a date.
func regoDate(res *chaperonev1.Resource) string {
	if res.GetDate() == nil {
		return ""
	}
	return regoTime(res.GetDate().AsTime())
}

// regoTime is a time as Rego input carries it: RFC 3339 in UTC.
func regoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z07:00") }

func consentTerm(f *facts) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("decision"), ast.StringTerm(string(f.consent))),
		ast.Item(ast.InternedTerm("namesSubject"), ast.InternedTerm(f.consentNamesSubject)),
		ast.Item(ast.InternedTerm("namesRecipient"), ast.InternedTerm(f.consentNamesRecipient)),
		ast.Item(ast.InternedTerm("restrictsRecipient"), ast.InternedTerm(f.consentRestrictsRecipient)),
		ast.Item(ast.InternedTerm("deciding"), decidingTerm(&f.deciding)),
	)
}

func decidingTerm(d *DecidingConsent) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("id"), ast.StringTerm(d.ID)),
		ast.Item(ast.InternedTerm("provision"), ast.StringTerm(d.Provision)),
		ast.Item(ast.InternedTerm("scope"), ast.StringTerm(d.Scope)),
		ast.Item(ast.InternedTerm("categories"), stringsTerm(d.Categories)),
		ast.Item(ast.InternedTerm("purposes"), stringsTerm(d.Purposes)),
	)
}

func factsTerm(f *facts) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("breakGlassGrant"), ast.InternedTerm(f.grant)),
		ast.Item(ast.InternedTerm("treatingRelationship"), ast.InternedTerm(f.treating)),
		ast.Item(ast.InternedTerm("sameOrganization"), ast.InternedTerm(f.sameOrganization)),
		ast.Item(ast.InternedTerm("population"), ast.InternedTerm(f.population)),
		ast.Item(ast.InternedTerm("scopes"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("present"), ast.InternedTerm(f.scopes.present)),
			ast.Item(ast.InternedTerm("allows"), ast.InternedTerm(f.scopes.allows)),
			ast.Item(ast.InternedTerm("levels"), stringsTerm(f.scopes.levels)),
		)),
		ast.Item(ast.InternedTerm("agreement"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("exists"), ast.InternedTerm(f.agreement.exists)),
			ast.Item(ast.InternedTerm("active"), ast.InternedTerm(f.agreement.active)),
			ast.Item(ast.InternedTerm("covers"), ast.InternedTerm(f.agreement.covers)),
			ast.Item(ast.InternedTerm("vendor"), ast.StringTerm(f.agreement.vendor)),
			ast.Item(ast.InternedTerm("tier"), ast.StringTerm(f.agreement.tier)),
			ast.Item(ast.InternedTerm("purposes"), stringsTerm(f.agreement.purposes)),
			ast.Item(ast.InternedTerm("resourceTypes"), stringsTerm(f.agreement.resourceTypes)),
		)),
	)
}

func stringsTerm(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func codingsTerm(cs []*chaperonev1.Coding) *ast.Term {
	ts := make([]*ast.Term, len(cs))
	for i, c := range cs {
		ts[i] = ast.ObjectTerm(
			ast.Item(ast.InternedTerm("system"), ast.StringTerm(c.GetSystem())),
			ast.Item(ast.InternedTerm("code"), ast.StringTerm(c.GetCode())),
		)
	}
	return ast.ArrayTerm(ts...)
}

func identifiersTerm(ids []*chaperonev1.Identifier) *ast.Term {
	ts := make([]*ast.Term, len(ids))
	for i, id := range ids {
		ts[i] = ast.ObjectTerm(
			ast.Item(ast.InternedTerm("system"), ast.StringTerm(id.GetSystem())),
			ast.Item(ast.InternedTerm("value"), ast.StringTerm(id.GetValue())),
		)
	}
	return ast.ArrayTerm(ts...)
}

func localTimeTerm(f *facts) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("weekday"), ast.StringTerm(f.weekday)),
		ast.Item(ast.InternedTerm("hour"), ast.InternedTerm(f.hour)),
		ast.Item(ast.InternedTerm("minute"), ast.InternedTerm(f.minute)),
	)
}
