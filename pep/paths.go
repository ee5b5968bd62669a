package pep

import (
	"slices"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir/elements"
)

// mask is one compiled mask path: the resource type it applies to and, per
// path segment, the JSON member names the element may appear under.
type mask struct {
	path  string
	typ   string // resource type; "" for a path rooted at Resource or DomainResource
	whole bool   // the path names the resource type itself: withhold it
	segs  []segment
}

// segment is one step of a mask path.
type segment struct {
	names []string // JSON member names, without "_" siblings
	// For a step over every variant of a choice element: the choice's name
	// and the lookup path of the element holding it. A member that looks
	// like a variant ("value" + upper case) but is neither one nor another
	// element there is a variant of a type the index does not know: the
	// resource is withheld rather than released with it.
	choice string
	parent string
}

// unknownVariant reports a member of obj that may be a variant of the
// segment's choice element that the index does not know.
func (s *segment) unknownVariant(obj *node) bool {
	if s.choice == "" {
		return false
	}
	for _, m := range obj.mems {
		k := m.key
		if len(k) > 0 && k[0] == '_' {
			k = k[1:]
		}
		if len(k) > len(s.choice) && string(k[:len(s.choice)]) == s.choice &&
			k[len(s.choice)] >= 'A' && k[len(s.choice)] <= 'Z' && !s.known(string(k)) {
			return true
		}
	}
	return false
}

// known reports whether name is a JSON name of the step's element or of
// an element beside it, in a release.
func (s *segment) known(name string) bool {
	if slices.Contains(s.names, name) {
		return true
	}
	for _, ix := range indexes() {
		if ix == nil {
			continue
		}
		if el, ok := ix.Lookup(s.parent + "." + name); ok && slices.Contains(el.JSONNames(), name) {
			return true
		}
	}
	return false
}

// applies reports whether m is a mask of resources of type typ.
func (m *mask) applies(typ string) bool { return m.typ == "" || m.typ == typ }

// indexes are the FHIR releases a mask path is read against. A path counts
// when one release can interpret it, and then names the members of every
// release that can, so that an element R5 added to a type is masked in R5
// resources too.
func indexes() [2]*elements.Index {
	return [2]*elements.Index{elements.For(elements.R4), elements.For(elements.R5)}
}

// compileMask reads one mask path. ok is false for a path no release can
// interpret: the caller withholds the resource.
func compileMask(path string) (mask, bool) {
	segs := strings.Split(path, ".")
	for _, s := range segs {
		if !validSegment(s) {
			return mask{}, false
		}
	}
	m := mask{path: path, typ: segs[0]}
	if segs[0] == "Resource" || segs[0] == "DomainResource" {
		m.typ = ""
	}
	ixs := indexes()
	if len(segs) == 1 {
		for _, ix := range ixs {
			if ix != nil && ix.IsResource(path) {
				m.whole = true
				return m, true
			}
		}
		return mask{}, false
	}
	m.segs = make([]segment, len(segs)-1)
	resolved := false
	for _, ix := range ixs {
		if ix == nil || (m.typ != "" && !ix.IsResource(m.typ)) {
			continue
		}
		if _, ok := ix.Lookup(path); !ok {
			continue
		}
		prefix := segs[0]
		for i, s := range segs[1:] {
			prefix += "." + s
			el, ok := ix.Lookup(prefix)
			if !ok {
				return mask{}, false // a path resolves only through its prefixes
			}
			names := el.JSONNames()
			seg := &m.segs[i]
			// An inner segment naming one variant of a choice
			// ("Observation.valueQuantity.unit") leads into that variant
			// only; a last segment removes every variant.
			if el.Choice && i < len(segs)-2 && slices.Contains(names, s) {
				names = []string{s}
			} else if el.Choice {
				seg.choice = el.Name
				seg.parent = prefix[:strings.LastIndexByte(prefix, '.')]
			}
			for _, n := range names {
				if !slices.Contains(seg.names, n) {
					seg.names = append(seg.names, n)
				}
			}
		}
		resolved = true
	}
	if !resolved {
		return mask{}, false
	}
	return m, true
}

// validSegment accepts an element name, optionally with the [x] of a
// choice: no FHIRPath functions, indexes or wildcards.
func validSegment(s string) bool {
	s = strings.TrimSuffix(s, "[x]")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// isResourceType reports whether typ is a resource type of a release.
func isResourceType(typ string) bool {
	for _, ix := range indexes() {
		if ix != nil && ix.IsResource(typ) {
			return true
		}
	}
	return false
}
