package engine

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/fhir"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// genFacts generates the facts of a request, every optional part present
// or absent, so that every attribute the engine may set is exercised.
func genFacts(t *rapid.T) *facts {
	word := rapid.StringMatching(`[a-z][a-z0-9-]{0,8}`)
	words := rapid.SliceOfN(word, 0, 3)
	codings := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) *chaperonev1.Coding {
		return &chaperonev1.Coding{System: "http://example.org/" + word.Draw(t, "system"), Code: word.Draw(t, "code")}
	}), 0, 3)
	identifiers := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) *chaperonev1.Identifier {
		return &chaperonev1.Identifier{System: "urn:" + word.Draw(t, "system"), Value: word.Draw(t, "value")}
	}), 0, 2)
	res := &chaperonev1.Resource{
		Type:           rapid.SampledFrom(fhir.ResourceTypes()).Draw(t, "type"),
		Id:             word.Draw(t, "id"),
		Patient:        rapid.SampledFrom([]string{"", "Patient/52"}).Draw(t, "patient"),
		Organization:   rapid.SampledFrom([]string{"", "Organization/o1"}).Draw(t, "organization"),
		Author:         rapid.SampledFrom([]string{"", "Practitioner/p2"}).Draw(t, "author"),
		SecurityLabels: codings.Draw(t, "labels"),
		Codes:          codings.Draw(t, "codes"),
		Categories:     codings.Draw(t, "categories"),
		Profiles:       words.Draw(t, "profiles"),
	}
	if rapid.Bool().Draw(t, "dated") {
		res.Date = timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	}
	req := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{
			Id:                      "Practitioner/" + word.Draw(t, "subject"),
			Kind:                    rapid.SampledFrom([]string{"practitioner", "patient", "device"}).Draw(t, "kind"),
			Roles:                   words.Draw(t, "roles"),
			Organization:            rapid.SampledFrom([]string{"", "Organization/o1"}).Draw(t, "subjectOrg"),
			Scopes:                  words.Draw(t, "scopes"),
			ClientId:                word.Draw(t, "client"),
			LaunchPatient:           rapid.SampledFrom([]string{"", "Patient/52"}).Draw(t, "launch"),
			Identifiers:             identifiers.Draw(t, "identifiers"),
			OrganizationIdentifiers: identifiers.Draw(t, "orgIdentifiers"),
		},
		Action:       string(rapid.SampledFrom(fhir.Interactions).Draw(t, "action")),
		Resource:     res,
		PurposeOfUse: rapid.SampledFrom([]string{"TREAT", "HRESCH", ""}).Draw(t, "purpose"),
		Context: &chaperonev1.Context{
			BreakGlassReason: rapid.SampledFrom([]string{"", "patient unconscious in the ER bay"}).Draw(t, "reason"),
			Ip:               rapid.SampledFrom([]string{"", "10.1.2.3", "::1"}).Draw(t, "ip"),
			NetworkZone:      word.Draw(t, "zone"),
			DeviceTrust:      word.Draw(t, "trust"),
			Phase:            rapid.SampledFrom([]string{"", PhaseRequest}).Draw(t, "phase"),
		},
	}
	at := time.Date(2026, 11, 30, rapid.IntRange(0, 23).Draw(t, "hour"), 0, 0, 0, time.UTC)
	f := &facts{
		req: req, exact: at, at: at, hour: at.Hour(),
		consent:                   rapid.SampledFrom([]ConsentDecision{ConsentPermit, ConsentDeny, ConsentNoConsent}).Draw(t, "consent"),
		consentNamesSubject:       rapid.Bool().Draw(t, "namesSubject"),
		consentNamesRecipient:     rapid.Bool().Draw(t, "namesRecipient"),
		consentRestrictsRecipient: rapid.Bool().Draw(t, "restricts"),
		grant:                     rapid.Bool().Draw(t, "grant"),
		treating:                  rapid.Bool().Draw(t, "treating"),
		sameOrganization:          rapid.Bool().Draw(t, "same"),
		population:                rapid.Bool().Draw(t, "population"),
		scopes: scopeFacts{
			present: rapid.Bool().Draw(t, "present"), allows: rapid.Bool().Draw(t, "allows"),
			levels: rapid.SliceOfN(rapid.SampledFrom([]string{"patient", "user", "system"}), 0, 2).Draw(t, "levels"),
		},
	}
	if f.consent != ConsentNoConsent && rapid.Bool().Draw(t, "deciding") {
		f.deciding = DecidingConsent{
			ID: word.Draw(t, "consentId"), Provision: rapid.SampledFrom([]string{"provision", "provision.provision[1]"}).Draw(t, "provision"),
			Scope:      rapid.SampledFrom([]string{"patient-privacy", "research", "unknown"}).Draw(t, "scope"),
			Categories: words.Draw(t, "categories"), Purposes: words.Draw(t, "purposes"),
		}
	}
	if rapid.Bool().Draw(t, "agreement") {
		f.agreement = agreementFact{
			exists: true, active: rapid.Bool().Draw(t, "active"), covers: rapid.Bool().Draw(t, "covers"),
			vendor: word.Draw(t, "vendor"), tier: word.Draw(t, "tier"),
			purposes: words.Draw(t, "purposes"), resourceTypes: words.Draw(t, "types"),
		}
	}
	return f
}

// TestCedarEntitiesMatchSchema: the principal, resource, action entities
// and context the engine builds for any request are exactly what the
// generated Cedar schema declares: cedar-go's validator accepts them, and
// every attribute the engine sets is in the model and every attribute the
// model requires is set, with its kind.
func TestCedarEntitiesMatchSchema(t *testing.T) {
	t.Parallel()
	m := NewPolicyModel()
	r, err := m.resolvedCedarSchema()
	if err != nil {
		t.Fatal(err)
	}
	v := validate.New(r)
	actions := actionEntities()
	if err := v.Entities(actions); err != nil {
		t.Fatalf("action entities: %v", err)
	}
	for uid := range actions {
		if _, ok := r.Actions[uid]; !ok {
			t.Errorf("action %s is not in the schema", uid)
		}
	}
	if got, want := len(r.Actions), len(actions); got != want {
		t.Errorf("schema declares %d actions, the engine %d", got, want)
	}
	consts := newConstRecords()
	rapid.Check(t, func(t *rapid.T) {
		f := genFacts(t)
		ents := newCedarEntities(f, actions, consts, nil)
		for _, e := range []cedar.Entity{ents.principal, ents.resource} {
			if err := v.Entity(e); err != nil {
				t.Fatalf("entity %s: %v", e.UID, err)
			}
		}
		req := cedar.Request{
			Principal: ents.principal.UID,
			Action:    cedar.NewEntityUID("Action", cedar.String(f.req.GetAction())),
			Resource:  ents.resource.UID,
			Context:   ents.context,
		}
		if err := v.Request(req); err != nil {
			t.Fatalf("request: %v", err)
		}
		if ents.principal.UID.Type != cedar.EntityType(m.PrincipalType) {
			t.Fatalf("principal type %s, model %s", ents.principal.UID.Type, m.PrincipalType)
		}
		for p := range ents.principal.Parents.All() {
			if p.Type != cedar.EntityType(m.RoleType) {
				t.Fatalf("principal parent %s is not a %s", p, m.RoleType)
			}
		}
		if !slices.Contains(m.ResourceTypes, string(ents.resource.UID.Type)) {
			t.Fatalf("resource type %s is not in the model", ents.resource.UID.Type)
		}
		matchCedarRecord(t, "principal", ents.principal.Attributes, m.Principal)
		matchCedarRecord(t, "resource", ents.resource.Attributes, m.Resource)
		matchCedarRecord(t, "context", ents.context, m.Context)
	})
}

func matchCedarRecord(t *rapid.T, path string, rec cedar.Record, attrs []Attr) {
	seen := map[string]bool{}
	for k, val := range rec.All() {
		i := slices.IndexFunc(attrs, func(a Attr) bool { return a.Name == string(k) })
		if i < 0 {
			t.Fatalf("%s.%s is set by the engine but not in the model", path, k)
		}
		seen[string(k)] = true
		matchCedarValue(t, path+"."+string(k), val, attrs[i].Type)
	}
	for _, a := range attrs {
		if !a.Optional && !seen[a.Name] {
			t.Fatalf("%s.%s is in the model but the engine does not set it", path, a.Name)
		}
	}
}

func matchCedarValue(t *rapid.T, path string, v cedar.Value, typ Type) {
	ok := false
	switch typ.Kind {
	case KindString:
		_, ok = v.(types.String)
	case KindLong:
		_, ok = v.(types.Long)
	case KindBool:
		_, ok = v.(types.Boolean)
	case KindDatetime:
		_, ok = v.(types.Datetime)
	case KindIPAddr:
		_, ok = v.(types.IPAddr)
	case KindSet:
		var s types.Set
		if s, ok = v.(types.Set); ok {
			for e := range s.All() {
				matchCedarValue(t, path+"[]", e, *typ.Elem)
			}
		}
	case KindRecord:
		var r types.Record
		if r, ok = v.(types.Record); ok {
			matchCedarRecord(t, path, r, typ.Attrs)
		}
	}
	if !ok {
		t.Fatalf("%s is %T, the model says %s", path, v, typ.Kind)
	}
}

// TestRegoInputMatchesSchema: the input document the engine builds for
// any request has exactly the keys and types of the model, and validates
// against the generated JSON Schema.
func TestRegoInputMatchesSchema(t *testing.T) {
	t.Parallel()
	m := NewPolicyModel()
	var schema map[string]any
	if err := json.Unmarshal(m.InputSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	consts := newRegoConsts()
	rapid.Check(t, func(t *rapid.T) {
		f := genFacts(t)
		input := regoInput(f, consts)
		matchRegoValue(t, "input", input, Type{Kind: KindRecord, Attrs: m.Input})
		doc, err := ast.JSON(input)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateJSONSchema("input", doc, schema); err != nil {
			t.Fatal(err)
		}
	})
}

func matchRegoValue(t *rapid.T, path string, v ast.Value, typ Type) {
	ok := false
	switch typ.Kind {
	case KindString, KindDatetime, KindIPAddr:
		_, ok = v.(ast.String)
	case KindLong:
		var n ast.Number
		if n, ok = v.(ast.Number); ok {
			_, ok = n.Int()
		}
	case KindBool:
		_, ok = v.(ast.Boolean)
	case KindSet:
		var a *ast.Array
		if a, ok = v.(*ast.Array); ok {
			a.Foreach(func(e *ast.Term) { matchRegoValue(t, path+"[]", e.Value, *typ.Elem) })
		}
	case KindRecord:
		var o ast.Object
		if o, ok = v.(ast.Object); ok {
			seen := map[string]bool{}
			o.Foreach(func(k, val *ast.Term) {
				name := string(k.Value.(ast.String))
				i := slices.IndexFunc(typ.Attrs, func(a Attr) bool { return a.Name == name })
				if i < 0 {
					t.Fatalf("%s.%s is set by the engine but not in the model", path, name)
				}
				seen[name] = true
				matchRegoValue(t, path+"."+name, val.Value, typ.Attrs[i].Type)
			})
			for _, a := range typ.Attrs {
				if !a.Optional && !seen[a.Name] {
					t.Fatalf("%s.%s is in the model but the engine does not set it", path, a.Name)
				}
			}
		}
	}
	if !ok {
		t.Fatalf("%s is %s, the model says %s", path, ast.ValueName(v), typ.Kind)
	}
}

// validateJSONSchema checks doc against the subset of JSON Schema the
// engine generates: type, properties, required, additionalProperties
// false, items.
func validateJSONSchema(path string, doc any, schema map[string]any) error {
	switch schema["type"] {
	case "object":
		obj, ok := doc.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", path, doc)
		}
		props, _ := schema["properties"].(map[string]any)
		for _, r := range schema["required"].([]any) {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s.%s: required, missing", path, r)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p, ok := props[k].(map[string]any)
			if !ok {
				if schema["additionalProperties"] == false {
					return fmt.Errorf("%s.%s: not in the schema", path, k)
				}
				continue
			}
			if err := validateJSONSchema(path+"."+k, obj[k], p); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := doc.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", path, doc)
		}
		for i, e := range arr {
			if err := validateJSONSchema(fmt.Sprintf("%s[%d]", path, i), e, schema["items"].(map[string]any)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := doc.(string); !ok {
			return fmt.Errorf("%s: %T, want a string", path, doc)
		}
	case "boolean":
		if _, ok := doc.(bool); !ok {
			return fmt.Errorf("%s: %T, want a boolean", path, doc)
		}
	case "integer":
		var ok bool
		switch n := doc.(type) {
		case json.Number:
			_, err := n.Int64()
			ok = err == nil
		case float64:
			ok = n == float64(int64(n))
		case int, int64:
			ok = true
		}
		if !ok {
			return fmt.Errorf("%s: %v, want an integer", path, doc)
		}
	default:
		return fmt.Errorf("%s: schema type %v not handled", path, schema["type"])
	}
	return nil
}

// TestSchemaCoversRegoMemoPaths: every leaf of the model has a getter in
// the Rego memo, and every getter reads a path of the model: a new input
// field must be added to both.
func TestSchemaCoversRegoMemoPaths(t *testing.T) {
	t.Parallel()
	paths := map[string]bool{} // path → is a leaf
	var walk func(prefix string, attrs []Attr)
	walk = func(prefix string, attrs []Attr) {
		for _, a := range attrs {
			p := prefix + a.Name
			paths[p] = a.Type.Kind != KindRecord
			if a.Type.Kind == KindRecord {
				walk(p+".", a.Type.Attrs)
			}
		}
	}
	walk("", NewPolicyModel().Input)
	for p, leaf := range paths {
		if _, ok := regoLeaves[p]; leaf && !ok {
			t.Errorf("input.%s is in the model but has no memo getter", p)
		}
	}
	for p := range regoLeaves {
		if _, ok := paths[p]; !ok {
			t.Errorf("the memo reads input.%s, which is not in the model", p)
		}
	}
}

// TestReducedCedarValidatorAgrees: validating against the resource types
// the sources name plus one (cedarValidatorFor) accepts and refuses the
// same policies as validating against every resource type, for the
// reference bundle and for policies with mistakes, including ones that
// name no resource type and ones that test a type the others do not name.
func TestReducedCedarValidatorAgrees(t *testing.T) {
	t.Parallel()
	m := NewPolicyModel()
	r, err := m.resolvedCedarSchema()
	if err != nil {
		t.Fatal(err)
	}
	full := validate.New(r)
	files, err := fs.Glob(os.DirFS("../policies"), "*.cedar")
	if err != nil || len(files) == 0 {
		t.Fatalf("reference policies: %v %v", files, err)
	}
	var srcs [][]byte
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join("../policies", f))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	srcs = append(srcs, []byte(`
permit (principal, action, resource) when { context.consnet == "PERMIT" };
permit (principal, action, resource) when { resource.date < context.time };
permit (principal, action, resource) when { resource is Observation && resource.codes.contains(1) };
permit (principal, action, resource) when { resource is Observation || resource.nonexistent };
permit (principal, action, resource is Observaton);
permit (principal, action, resource) when { resource == Patient::"p" && context.hour < "9" };
forbid (principal, action in Action::"access", resource is Patient) unless { resource has date };
`))
	reduced, err := m.cedarValidatorFor(srcs)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, src := range srcs {
		list, err := cedar.NewPolicyListFromBytes(fmt.Sprint(i), src)
		if err != nil {
			t.Fatal(err)
		}
		for j, p := range list {
			a := (*cedarast.Policy)(p.AST())
			ef, er := full.Policy("p", a), reduced.Policy("p", a)
			if (ef == nil) != (er == nil) {
				t.Errorf("source %d policy %d: full schema: %v; reduced: %v", i, j, ef, er)
			}
			if ef != nil {
				n++
			}
		}
	}
	if n != 6 {
		t.Errorf("%d policies refused, want the 6 with mistakes", n)
	}
}
