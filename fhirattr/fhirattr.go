package fhirattr

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// ErrAttributes matches every error of [Extract] and [FromMap].
var ErrAttributes = errors.New("resource attributes")

// Attributes are what a resource says about itself for a decision.
type Attributes struct {
	Type      string
	ID        string
	VersionID string
	// Patients are the patients ("Patient/id") whose compartment holds the
	// resource, sorted, without repeats; empty when none.
	Patients []string
	// Organization is the owning organization ("Organization/id"), or "".
	Organization string
	// Labels are the codings of meta.security.
	Labels []*chaperonev1.Coding
}

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)
	typePattern  = regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
	codePattern  = regexp.MustCompile(`^[^\s\p{Z}\p{C}]{1,256}$`)
	sysPattern   = regexp.MustCompile(`^[^\s\p{Z}\p{C}]{0,512}$`)
	literalRef   = regexp.MustCompile(`^([A-Z][A-Za-z]+)/([A-Za-z0-9.-]{1,64})(?:/_history/[A-Za-z0-9.-]{1,64})?$`)
	patientInURL = regexp.MustCompile(`(?:^|/)Patient/[^/]+(?:/_history/[^/]+)?$`)
)

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrAttributes, fmt.Sprintf(format, args...))
}

// Extract reads the attributes of one resource. tenantTagSystem is the
// meta.tag system naming the owning organization ("" for none).
func Extract(resource []byte, tenantTagSystem string) (*Attributes, error) {
	var m map[string]any
	if err := json.Unmarshal(resource, &m); err != nil || m == nil {
		return nil, fail("not a JSON object")
	}
	return FromMap(m, tenantTagSystem)
}

// FromMap is [Extract] for a resource already decoded by encoding/json.
func FromMap(m map[string]any, tenantTagSystem string) (*Attributes, error) {
	typ, _ := m["resourceType"].(string)
	if !typePattern.MatchString(typ) || !fhir.IsResourceType(typ) {
		return nil, fail("no known resourceType")
	}
	a := &Attributes{Type: typ}
	if v, ok := m["id"]; ok {
		id, _ := v.(string)
		if !idPattern.MatchString(id) {
			return nil, fail("%s: id is not an id", typ)
		}
		a.ID = id
	}
	meta, _ := m["meta"].(map[string]any)
	if v, ok := meta["versionId"].(string); ok {
		a.VersionID = v
	}
	if err := a.readMeta(meta, tenantTagSystem); err != nil {
		return nil, err
	}
	if err := a.readPatients(m); err != nil {
		return nil, err
	}
	if typ == "Patient" && a.Organization == "" {
		if mo, ok := m["managingOrganization"].(map[string]any); ok {
			ref, _ := mo["reference"].(string)
			t, id, ok := parseRef(ref)
			if !ok || t != "Organization" {
				return nil, fail("Patient.managingOrganization is not a literal Organization reference")
			}
			a.Organization = "Organization/" + id
		}
	}
	return a, nil
}

func (a *Attributes) readMeta(meta map[string]any, tenantTagSystem string) error {
	if meta == nil {
		return nil
	}
	sec, _ := meta["security"].([]any)
	if _, ok := meta["security"]; ok && sec == nil {
		return fail("meta.security is not an array")
	}
	for _, s := range sec {
		c, _ := s.(map[string]any)
		system, _ := c["system"].(string)
		code, _ := c["code"].(string)
		if !codePattern.MatchString(code) || !sysPattern.MatchString(system) {
			return fail("a meta.security coding without a plain code")
		}
		a.Labels = append(a.Labels, &chaperonev1.Coding{System: system, Code: code})
	}
	if tenantTagSystem == "" {
		return nil
	}
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		c, _ := t.(map[string]any)
		if system, _ := c["system"].(string); system != tenantTagSystem {
			continue
		}
		code, _ := c["code"].(string)
		id := strings.TrimPrefix(code, "Organization/")
		if !idPattern.MatchString(id) {
			return fail("the tenant tag's code is not an organization id")
		}
		org := "Organization/" + id
		if a.Organization != "" && a.Organization != org {
			return fail("two tenant tags name different organizations")
		}
		a.Organization = org
	}
	return nil
}

func (a *Attributes) readPatients(m map[string]any) error {
	if a.Type == "Patient" {
		if a.ID != "" {
			a.Patients = []string{"Patient/" + a.ID}
		}
		return nil
	}
	var refs []map[string]any
	if paths, ok := compartmentPaths[a.Type]; ok {
		for _, p := range paths {
			refs = collect(m, strings.Split(p, "."), refs)
		}
	} else if fhir.InPatientCompartment(a.Type) {
		refs = everyReference(m, refs, 0)
	}
	for _, r := range refs {
		p, err := patientOf(r)
		if err != nil {
			return fmt.Errorf("%s: %w", a.Type, err)
		}
		if p != "" && !slices.Contains(a.Patients, p) {
			a.Patients = append(a.Patients, p)
		}
	}
	slices.Sort(a.Patients)
	return nil
}

// collect appends the objects found at path under v, through arrays.
func collect(v any, path []string, out []map[string]any) []map[string]any {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = collect(e, path, out)
		}
	case map[string]any:
		if len(path) == 0 {
			return append(out, x)
		}
		if next, ok := x[path[0]]; ok {
			out = collect(next, path[1:], out)
		}
	}
	return out
}

// maxDepth bounds the walk of everyReference.
const maxDepth = 64

// everyReference appends every object with a "reference" member under v
// (contained resources excepted: they are not the resource's own data
// links).
func everyReference(v any, out []map[string]any, depth int) []map[string]any {
	if depth > maxDepth {
		return out
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = everyReference(e, out, depth+1)
		}
	case map[string]any:
		if _, ok := x["reference"]; ok {
			out = append(out, x)
		}
		for k, e := range x {
			if k != "contained" {
				out = everyReference(e, out, depth+1)
			}
		}
	}
	return out
}

// patientOf is the patient a Reference names, "" when it names something
// else, an error when it may name a patient that cannot be identified.
func patientOf(r map[string]any) (string, error) {
	typ, _ := r["type"].(string)
	ref, hasRef := r["reference"].(string)
	if !hasRef {
		if _, ok := r["reference"]; ok {
			return "", fail("a reference that is not a string")
		}
		if _, ok := r["identifier"]; ok && (typ == "" || typ == "Patient") {
			return "", fail("a logical reference that may name a patient")
		}
		return "", nil
	}
	if t, id, ok := parseRef(ref); ok {
		if typ != "" && typ != t {
			return "", fail("a reference whose type disagrees with its target")
		}
		if t == "Patient" {
			return "Patient/" + id, nil
		}
		return "", nil
	}
	switch {
	case strings.HasPrefix(ref, "#"):
		// A contained resource is not a patient of the server.
		if typ == "Patient" {
			return "", fail("a reference to a contained Patient")
		}
		return "", nil
	case patientInURL.MatchString(ref), typ == "Patient", strings.HasPrefix(ref, "urn:"):
		return "", fail("a reference to a patient that is not a literal Patient/id")
	case strings.Contains(ref, "://"):
		return "", nil // another server's resource, not a patient
	}
	return "", fail("a reference that is not a literal Type/id")
}

// parseRef reads "Type/id" or "Type/id/_history/v".
func parseRef(ref string) (typ, id string, ok bool) {
	m := literalRef.FindStringSubmatch(ref)
	if m == nil || !fhir.IsResourceType(m[1]) {
		return "", "", false
	}
	return m[1], m[2], true
}

// Resources are the CheckRequest resources to decide for a: one per
// patient, each with the organization and labels (every one must be
// allowed to release the resource), or one without a patient.
func (a *Attributes) Resources() []*chaperonev1.Resource {
	one := func(patient string) *chaperonev1.Resource {
		return &chaperonev1.Resource{Type: a.Type, Id: a.ID, Patient: patient, Organization: a.Organization, SecurityLabels: a.Labels}
	}
	if len(a.Patients) == 0 {
		return []*chaperonev1.Resource{one("")}
	}
	out := make([]*chaperonev1.Resource, 0, len(a.Patients))
	for _, p := range a.Patients {
		out = append(out, one(p))
	}
	return out
}
