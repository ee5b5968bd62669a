package console

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"testing/fstest"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policytest"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// requestForm is the playground's form: the common CheckRequest fields,
// and proto JSON for the rest.
type requestForm struct {
	SubjectID, SubjectKind, Roles, Organization, Scopes, ClientID string
	Action                                                        string
	ResourceType, ResourceID, Patient, ResourceOrg, Labels        string
	Purpose, BreakGlassReason, NetworkZone, DeviceTrust           string
	Extra                                                         string
	// Policy is "active" or "draft"; DraftFile the bundle file the draft
	// replaces ("" adds it as draft.cedar or draft.rego), DraftLang its
	// language when it is new.
	Policy, DraftFile, DraftLang, Draft string
}

// example is a request to start from.
type example struct {
	Name string
	Form requestForm
}

// examples fit the reference bundle; any bundle can be tried with them.
var examples = []example{
	{"Clinician reads an observation in their own organization", requestForm{
		SubjectID: "Practitioner/p1", SubjectKind: "practitioner", Roles: "clinician", Organization: "Organization/o1",
		Action: "read", ResourceType: "Observation", ResourceID: "o1", Patient: "Patient/52", ResourceOrg: "Organization/o1",
		Purpose: "TREAT", NetworkZone: "clinic", DeviceTrust: "managed"}},
	{"Break-glass: a clinician in an emergency, with a reason", requestForm{
		SubjectID: "Practitioner/p1", SubjectKind: "practitioner", Roles: "clinician", Organization: "Organization/o1",
		Action: "read", ResourceType: "AllergyIntolerance", ResourceID: "all-1", Patient: "Patient/53", ResourceOrg: "Organization/o1",
		Purpose: "ETREAT", NetworkZone: "clinic", DeviceTrust: "managed",
		BreakGlassReason: "unconscious patient, checking allergies before anaesthesia"}},
	{"Clinician of another organization", requestForm{
		SubjectID: "Practitioner/p2", SubjectKind: "practitioner", Roles: "clinician", Organization: "Organization/o2",
		Action: "read", ResourceType: "Observation", ResourceID: "o1", Patient: "Patient/52", ResourceOrg: "Organization/o1",
		Purpose: "TREAT", NetworkZone: "clinic", DeviceTrust: "managed"}},
	{"Patient reads their own record", requestForm{
		SubjectID: "Patient/52", SubjectKind: "patient", Roles: "patient",
		Action: "read", ResourceType: "Observation", ResourceID: "o1", Patient: "Patient/52", ResourceOrg: "Organization/o1",
		Purpose: "PATRQT"}},
	{"Sensitive data (substance use disorder label)", requestForm{
		SubjectID: "Practitioner/p1", SubjectKind: "practitioner", Roles: "clinician", Organization: "Organization/o1",
		Action: "read", ResourceType: "Condition", ResourceID: "c1", Patient: "Patient/52", ResourceOrg: "Organization/o1",
		Labels: "http://terminology.hl7.org/CodeSystem/v3-ActCode|SUD", Purpose: "TREAT", NetworkZone: "clinic", DeviceTrust: "managed"}},
}

type playgroundData struct {
	Form      requestForm
	Examples  []example
	Files     []string
	Revision  string
	CanDraft  bool
	Ran       string // "decide" or "suites"
	Request   string
	Response  *chaperonev1.CheckResponse
	Trace     *engine.Trace
	Audited   bool
	Suites    *policytest.Summary
	Failures  []policytest.Result
	DraftNote string
}

// playground serves the Playground page. GET shows the form (?example=N
// fills it from an example, ?file=P loads a bundle file into the draft
// box); POST decides (audited as the caller's Check when it asks the active
// bundle) or runs the suites.
func (c *Console) playground(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "playground", ProcCheck) {
		return
	}
	ctx := r.Context()
	archive := c.cfg.Bundles.Archive()
	d := playgroundData{Examples: examples, Files: policyFiles(archive), Revision: c.cfg.Bundles.Status().Revision,
		CanDraft: c.cfg.Engine != nil && allowed(ctx, ProcBundleStatus)}
	v := view{Title: "Playground", Nav: "playground", Data: &d}
	if r.Method != http.MethodPost {
		d.Form = examples[0].Form
		q := r.URL.Query()
		if n, err := strconv.Atoi(q.Get("example")); err == nil && n >= 0 && n < len(examples) {
			d.Form = examples[n].Form
		}
		d.Form.Policy = "active"
		if f := q.Get("file"); f != "" && d.CanDraft {
			if !contains(d.Files, f) {
				v.Error = "No policy file " + f + " in the active bundle."
			} else if src, err := fs.ReadFile(archive.FS(), f); err == nil {
				d.Form.Policy, d.Form.DraftFile, d.Form.Draft = "draft", f, string(src)
			}
		}
		c.render(w, r, http.StatusOK, "playground", v)
		return
	}
	d.Form = readRequestForm(r)
	d.Ran = r.PostFormValue("run")
	status := http.StatusOK
	var bundle *engine.Bundle
	if d.Form.Policy == "draft" || d.Ran == "suites" {
		if !d.CanDraft {
			v.Error = "Drafts and suites need a grant of chaperone.v1.BundleService/Status."
			c.render(w, r, http.StatusForbidden, "playground", v)
			return
		}
		if archive == nil {
			v.Error = "No bundle is active."
			c.render(w, r, http.StatusConflict, "playground", v)
			return
		}
	}
	var files fstest.MapFS
	if d.Form.Policy == "draft" {
		var err error
		files, d.DraftNote, err = draftFiles(archive, d.Form)
		if err == nil {
			bundle, err = engine.LoadBundle(files)
		}
		if err != nil {
			v.Error = "The draft does not compile: " + err.Error()
			c.render(w, r, http.StatusBadRequest, "playground", v)
			return
		}
	}
	switch d.Ran {
	case "suites":
		if files == nil {
			files = mapFS(archive)
		}
		if bundle == nil {
			var err error
			if bundle, err = engine.LoadBundle(files); err != nil {
				v.Error = "The active bundle does not compile again: " + err.Error()
				c.render(w, r, http.StatusInternalServerError, "playground", v)
				return
			}
		}
		sum, err := runSuites(ctx, files, bundle)
		if err != nil {
			v.Error = "The suites could not run: " + err.Error()
			status = http.StatusBadRequest
			break
		}
		d.Suites = &sum
		for _, s := range sum.Suites {
			for _, t := range s.Tests {
				if t.Status == policytest.Fail {
					d.Failures = append(d.Failures, t)
				}
			}
		}
	default:
		d.Ran = "decide"
		req, err := buildRequest(d.Form, c.cfg.Validator)
		if err != nil {
			v.Error = err.Error()
			c.render(w, r, http.StatusBadRequest, "playground", v)
			return
		}
		if bundle != nil {
			if err := c.cfg.Validator.Validate(req); err != nil {
				v.Error = validationMessage(err)
				c.render(w, r, http.StatusBadRequest, "playground", v)
				return
			}
			eng := c.cfg.Engine(bundle)
			d.Response, d.Trace = eng.Explain(ctx, req)
		} else {
			resp, trace, err := c.cfg.Decider.Explain(ctx, req)
			if err != nil {
				v.Error = validationMessage(err)
				c.render(w, r, http.StatusBadRequest, "playground", v)
				return
			}
			d.Response, d.Trace, d.Audited = resp, trace, true
		}
		raw, _ := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(req)
		d.Request = string(raw)
	}
	c.render(w, r, status, "playground", v)
}

func readRequestForm(r *http.Request) requestForm {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	return requestForm{
		SubjectID: f("subjectId"), SubjectKind: f("subjectKind"), Roles: f("roles"), Organization: f("organization"),
		Scopes: f("scopes"), ClientID: f("clientId"), Action: f("action"),
		ResourceType: f("resourceType"), ResourceID: f("resourceId"), Patient: f("patient"), ResourceOrg: f("resourceOrganization"),
		Labels: f("labels"), Purpose: f("purposeOfUse"), BreakGlassReason: f("breakGlassReason"),
		NetworkZone: f("networkZone"), DeviceTrust: f("deviceTrust"), Extra: f("extra"),
		Policy: f("policy"), DraftFile: f("draftFile"), DraftLang: f("draftLang"), Draft: r.PostFormValue("draft"),
	}
}

// buildRequest makes the CheckRequest of the form: the fields, then the
// JSON box merged over them (its scalars win, its lists are added).
func buildRequest(f requestForm, v *validation.Validator) (*chaperonev1.CheckRequest, error) {
	req := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: f.SubjectID, Kind: f.SubjectKind, Roles: words(f.Roles), Organization: f.Organization,
			Scopes: words(f.Scopes), ClientId: f.ClientID},
		Action:       f.Action,
		Resource:     &chaperonev1.Resource{Type: f.ResourceType, Id: f.ResourceID, Patient: f.Patient, Organization: f.ResourceOrg},
		PurposeOfUse: f.Purpose,
		Context:      &chaperonev1.Context{BreakGlassReason: f.BreakGlassReason, NetworkZone: f.NetworkZone, DeviceTrust: f.DeviceTrust},
	}
	for _, l := range words(f.Labels) {
		system, code, ok := strings.Cut(l, "|")
		if !ok {
			system, code = "", l
		}
		req.Resource.SecurityLabels = append(req.Resource.SecurityLabels, &chaperonev1.Coding{System: system, Code: code})
	}
	if strings.TrimSpace(f.Extra) != "" {
		extra := &chaperonev1.CheckRequest{}
		if err := validation.UnmarshalJSON([]byte(f.Extra), extra); err != nil {
			return nil, fmt.Errorf("More fields (JSON): %w", err)
		}
		proto.Merge(req, extra)
	}
	return req, nil
}

// words splits a list typed with commas or spaces.
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// mapFS copies the files of a.
func mapFS(a *bundles.Archive) fstest.MapFS {
	m := fstest.MapFS{}
	src := a.FS()
	for _, p := range a.Paths() {
		if data, err := fs.ReadFile(src, p); err == nil {
			m[p] = &fstest.MapFile{Data: data, Mode: 0o644}
		}
	}
	return m
}

// draftFiles are the active bundle's files with the draft in place of the
// file it edits, or added beside them.
func draftFiles(a *bundles.Archive, f requestForm) (fstest.MapFS, string, error) {
	m := mapFS(a)
	name := f.DraftFile
	switch {
	case name != "":
		if _, ok := m[name]; !ok || (path.Ext(name) != ".cedar" && path.Ext(name) != ".rego") {
			return nil, "", fmt.Errorf("no policy file %s in the active bundle", name)
		}
	case f.DraftLang == "rego":
		name = "draft.rego"
	default:
		name = "draft.cedar"
	}
	if strings.TrimSpace(f.Draft) == "" {
		return nil, "", fmt.Errorf("the draft policy is empty")
	}
	note := "the draft replaces " + name
	if f.DraftFile == "" {
		note = "the draft is added to the active bundle as " + name
	}
	m[name] = &fstest.MapFile{Data: []byte(f.Draft), Mode: 0o644}
	return m, note + " (compiled here, never activated)", nil
}

// errNoSuites is a bundle without test suites (the embedded reference
// bundle carries none: serve its directory to run them).
var errNoSuites = errors.New("the active bundle carries no test suites (*_test.yaml); serve a policy directory or a built bundle that has them")

// suiteTimeout bounds a suite run started from the console.
const suiteTimeout = 2 * time.Minute

// runSuites runs the suites among files against b.
func runSuites(ctx context.Context, files fstest.MapFS, b *engine.Bundle) (policytest.Summary, error) {
	a, err := bundles.ReadDir(files)
	if err != nil {
		return policytest.Summary{}, err
	}
	dir, cleanup, err := writeArchive(a)
	if err != nil {
		return policytest.Summary{}, err
	}
	defer cleanup()
	if files, err := policytest.FindSuites(dir); err != nil || len(files) == 0 {
		return policytest.Summary{}, errNoSuites
	}
	ctx, cancel := context.WithTimeout(ctx, suiteTimeout)
	defer cancel()
	return policytest.Run(ctx, dir, policytest.Options{Bundle: b})
}
