package pep

import (
	"errors"
	"fmt"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// The security label [Apply] puts on a resource it masked (HL7 DS4P: the
// v3 ObservationValue code for "redacted").
const (
	SecurityRedacted       = "REDACTED"
	SecurityRedactedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
)

// Errors. Each is wrapped with context; the resource is withheld whenever
// one is returned.
var (
	// ErrInvalidJSON: the input is not one well-formed JSON value
	// (syntax, invalid UTF-8, a duplicate member name, nesting too deep).
	ErrInvalidJSON = errors.New("pep: invalid JSON")
	// ErrNotResource: the input is not a JSON object with a string
	// resourceType.
	ErrNotResource = errors.New("pep: not a FHIR resource")
	// ErrNotBundle: a Bundle variant got something that is not a Bundle.
	ErrNotBundle = errors.New("pep: not a FHIR Bundle")
	// ErrTooLarge: the input is over the configured size limit.
	ErrTooLarge = errors.New("pep: input too large")
	// ErrDecide: the decide callback failed or answered the wrong number
	// of decisions.
	ErrDecide = errors.New("pep: decide entries")
)

// label is a security label of a redactLabels obligation.
type label struct{ system, code string }

// plan is a compiled Obligations message.
type plan struct {
	masks  []mask
	labels []label
	refuse error // an obligation that cannot be applied: withhold everything
}

// ErrUnenforceable: an obligation [Apply] cannot carry out; every resource
// is withheld under it. [CheckObligations] returns it wrapped with the
// obligation's field.
var ErrUnenforceable = errors.New("pep: obligation cannot be enforced")

// CheckObligations reports the first obligation of ob that [Apply] cannot
// carry out, naming its field (JSON name), e.g.
// `maskPaths[1] "Patient.telcom": no element of FHIR R4 or R5`; nil when
// Apply can enforce them all. A PEP logs it to tell a policy defect from a
// withheld resource.
func CheckObligations(ob *chaperonev1.Obligations) error { return compile(ob).refuse }

func unenforceable(field, why string) error {
	return fmt.Errorf("%w: %s: %s", ErrUnenforceable, field, why)
}

// compile reads ob. An obligation Apply cannot carry out makes a plan that
// withholds every resource.
func compile(ob *chaperonev1.Obligations) *plan {
	p := &plan{}
	if ob == nil {
		return p
	}
	// Fields of a newer API that this package does not know are
	// obligations it cannot apply.
	if len(ob.ProtoReflect().GetUnknown()) > 0 {
		p.refuse = unenforceable("obligations", "fields this version does not know")
		return p
	}
	if ob.GetPerEntryCheck() {
		p.refuse = unenforceable("perEntryCheck", "only the caller can decide each resource")
		return p
	}
	for i, path := range ob.GetMaskPaths() {
		m, ok := compileMask(path)
		if !ok {
			p.refuse = unenforceable(fmt.Sprintf("maskPaths[%d] %q", i, path), "no element of FHIR R4 or R5")
			return p
		}
		p.masks = append(p.masks, m)
	}
	for i, l := range ob.GetRedactLabels() {
		if l.GetCode() == "" || len(l.ProtoReflect().GetUnknown()) > 0 {
			p.refuse = unenforceable(fmt.Sprintf("redactLabels[%d]", i), "no code, or fields this version does not know")
			return p
		}
		p.labels = append(p.labels, label{l.GetSystem(), l.GetCode()})
	}
	return p
}

// Apply enforces the obligations of one resource-phase ALLOW on one FHIR
// resource (JSON) and returns the resource to release. withheld means:
// release nothing (a redactLabels hit, or an obligation Apply cannot carry
// out). err is set only for input that is not a JSON FHIR resource, and the
// resource is then withheld too. out is resource itself when nothing had to
// change; otherwise compact JSON with the members in their input order.
func Apply(ob *chaperonev1.Obligations, resource []byte) (out []byte, withheld bool, err error) {
	p := compile(ob)
	levels := maxDepth
	if p.refuse != nil || p.empty() {
		levels = 1 // check the input, build nothing it does not need
	}
	root, err := parseResource(resource, levels)
	if err != nil {
		return nil, true, err
	}
	changed, ok := p.apply(root)
	if !ok {
		return nil, true, nil
	}
	if !changed {
		return resource, false, nil
	}
	return appendJSON(make([]byte, 0, len(resource)), root), false, nil
}

// parseResource parses a JSON object with a string resourceType, its
// tree levels deep (see parseLevels).
func parseResource(b []byte, levels int) (*node, error) {
	root, err := parseLevels(b, levels)
	if err != nil {
		return nil, err
	}
	if _, ok := root.get("resourceType").str(); !ok {
		return nil, ErrNotResource
	}
	return root, nil
}

// apply enforces p on a parsed resource in place: changed reports whether
// anything was masked, ok=false that the resource must be withheld.
func (p *plan) apply(root *node) (changed, ok bool) {
	if p.refuse != nil {
		return false, false
	}
	if p.empty() {
		// Nothing to enforce; contained resources need no look either.
		return false, true
	}
	return p.resource(root, 0)
}

// empty reports a plan that changes and withholds nothing.
func (p *plan) empty() bool { return p.refuse == nil && len(p.masks) == 0 && len(p.labels) == 0 }

// resource enforces p on one resource object and the resources nested in
// it (contained, Bundle entries, Parameters values).
func (p *plan) resource(n *node, depth int) (masked, ok bool) {
	if depth > maxDepth {
		return false, false
	}
	typ, _ := n.get("resourceType").str()
	if len(p.masks) > 0 && !isResourceType(typ) {
		return false, false // no way to tell which masks apply
	}
	if p.labelled(n) {
		return false, false
	}
	for i := range p.masks {
		m := &p.masks[i]
		if !m.applies(typ) {
			continue
		}
		if m.whole {
			return false, false
		}
		removed, ok := removePath(n, m.segs)
		if !ok {
			return false, false
		}
		masked = masked || removed
	}
	for _, mem := range n.mems {
		var nm, nok bool
		if mem.is("contained") {
			nm, nok = p.contained(mem.val, depth)
		} else {
			nm, nok = p.nested(mem.val, typ, mem.key, depth+1)
		}
		if !nok {
			return false, false
		}
		masked = masked || nm
	}
	if masked {
		// The narrative may show what was masked; the label says the
		// resource is not whole.
		n.remove("text")
		if !markRedacted(n) {
			return false, false
		}
	}
	return masked, true
}

// contained enforces p on a contained array: every item must be a resource.
func (p *plan) contained(v *node, depth int) (masked, ok bool) {
	if v.kind != kindArray {
		return false, false
	}
	for _, e := range v.elems {
		if _, isRes := e.get("resourceType").str(); !isRes {
			return false, false
		}
		m, ok := p.resource(e, depth+1)
		if !ok {
			return false, false
		}
		masked = masked || m
	}
	return masked, true
}

// nested looks for resources inside a non-resource value: any object with a
// string resourceType is one. In a Bundle or Parameters, the members that
// hold resources (entry.resource, entry.response.outcome,
// parameter.resource) must hold one.
func (p *plan) nested(v *node, parentType string, name []byte, depth int) (masked, ok bool) {
	if depth > maxDepth {
		return false, false
	}
	switch v.kind {
	case kindObject:
		if _, isRes := v.get("resourceType").str(); isRes {
			return p.resource(v, depth)
		}
		if (parentType == "Bundle" || parentType == "Parameters") && (string(name) == "resource" || string(name) == "outcome") {
			return false, false
		}
		for _, mem := range v.mems {
			m, ok := p.nested(mem.val, parentType, mem.key, depth+1)
			if !ok {
				return false, false
			}
			masked = masked || m
		}
	case kindArray:
		for _, e := range v.elems {
			m, ok := p.nested(e, parentType, name, depth+1)
			if !ok {
				return false, false
			}
			masked = masked || m
		}
	}
	return masked, true
}

// labelled reports whether n's meta.security carries a label of p. A label
// without a system matches that code in any system, and a coding without a
// system matches a label of that code in any system: when in doubt, the
// resource is withheld. A meta or security that is not well formed counts
// as labelled.
func (p *plan) labelled(n *node) bool {
	if len(p.labels) == 0 {
		return false
	}
	meta := n.get("meta")
	if meta == nil {
		return false
	}
	if meta.kind != kindObject {
		return true
	}
	sec := meta.get("security")
	if sec == nil {
		return false
	}
	if sec.kind != kindArray {
		return true
	}
	for _, c := range sec.elems {
		if c.kind != kindObject {
			return true
		}
		code, ok := c.get("code").str()
		if !ok {
			if c.get("code") != nil {
				return true
			}
			continue
		}
		system, ok := c.get("system").str()
		if !ok && c.get("system") != nil {
			return true
		}
		for _, l := range p.labels {
			if code == l.code && (l.system == "" || system == "" || system == l.system) {
				return true
			}
		}
	}
	return false
}

// removePath removes the element that segs leads to from obj, with its "_"
// primitive sibling, through arrays and every choice variant. Objects and
// arrays left empty on the way are removed too (FHIR allows no empty ones).
// ok is false when obj holds what may be a variant of a masked choice
// element that the index does not know.
func removePath(obj *node, segs []segment) (removed, ok bool) {
	if obj.kind != kindObject {
		return false, true
	}
	if segs[0].unknownVariant(obj) {
		return false, false
	}
	for _, name := range segs[0].names {
		for _, key := range [2]string{name, "_" + name} {
			if len(segs) == 1 {
				if obj.remove(key) {
					removed = true
				}
				continue
			}
			v := obj.get(key)
			if v == nil {
				continue
			}
			r, ok := descend(v, segs[1:], key[0] == '_')
			if !ok {
				return false, false
			}
			if r {
				removed = true
				if empty(v) {
					obj.remove(key)
				}
			}
		}
	}
	return removed, true
}

// descend applies removePath to an object or to each object of an array.
// In a "_" sibling array the items line up with the primitive array, so an
// emptied item becomes null instead of going.
func descend(v *node, segs []segment, sibling bool) (removed, ok bool) {
	switch v.kind {
	case kindObject:
		return removePath(v, segs)
	case kindArray:
		kept := v.elems[:0]
		for _, e := range v.elems {
			r, ok := removePath(e, segs)
			if !ok {
				return false, false
			}
			if r {
				removed = true
				if empty(e) {
					if !sibling {
						continue
					}
					e = &node{kind: kindScalar, raw: []byte("null")}
				}
			}
			kept = append(kept, e)
		}
		v.elems = kept
		return removed, true
	}
	return false, true
}

// empty reports an object without members, or an array with no items or
// only nulls.
func empty(v *node) bool {
	switch v.kind {
	case kindObject:
		return len(v.mems) == 0
	case kindArray:
		for _, e := range v.elems {
			if !(e.kind == kindScalar && string(e.raw) == "null") {
				return false
			}
		}
		return true
	}
	return false
}

// markRedacted adds the REDACTED security label to n's meta, once. It
// reports false when meta or meta.security is not well formed.
func markRedacted(n *node) bool {
	meta := n.get("meta")
	if meta == nil {
		meta = &node{kind: kindObject}
		// Meta goes where FHIR orders it: after resourceType and id.
		at := 0
		for i, m := range n.mems {
			if m.is("resourceType") || m.is("id") {
				at = i + 1
			}
		}
		n.mems = append(n.mems[:at], append([]member{newMember("meta", meta)}, n.mems[at:]...)...)
	}
	if meta.kind != kindObject {
		return false
	}
	sec := meta.get("security")
	if sec == nil {
		sec = &node{kind: kindArray}
		meta.mems = append(meta.mems, newMember("security", sec))
	}
	if sec.kind != kindArray {
		return false
	}
	for _, c := range sec.elems {
		system, _ := c.get("system").str()
		code, _ := c.get("code").str()
		if system == SecurityRedactedSystem && code == SecurityRedacted {
			return true
		}
	}
	sec.elems = append(sec.elems, &node{kind: kindObject, mems: []member{
		newMember("system", stringNode(SecurityRedactedSystem)),
		newMember("code", stringNode(SecurityRedacted)),
		newMember("display", stringNode("redacted")),
	}})
	return true
}
