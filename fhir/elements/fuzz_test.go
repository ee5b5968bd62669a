package elements_test

import (
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir/elements"
)

// FuzzLookup: Lookup and Children never panic; a path that resolves has
// only non-empty segments, starts with a type of the release, and its
// element resolves again by its own definition path.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"Patient.name.given", "Observation.valueQuantity.unit", "Questionnaire.item.item.item.linkId",
		"Observation.value[x]", "Patient..name", "Bundle.entry.resource.meta.tag", "string.value", "Extension.valueHumanName.given"} {
		f.Add(s)
	}
	ixs := []*elements.Index{elements.For(elements.R4), elements.For(elements.R5)}
	f.Fuzz(func(t *testing.T, path string) {
		for _, ix := range ixs {
			_ = ix.Children(path)
			e, ok := ix.Lookup(path)
			if !ok {
				continue
			}
			typ, _, _ := strings.Cut(path, ".")
			if _, known := ix.Type(typ); !known {
				t.Fatalf("%s: %q resolves from unknown type %q", ix.Version(), path, typ)
			}
			for _, seg := range strings.Split(path, ".") {
				if seg == "" {
					t.Fatalf("%s: %q resolves with an empty segment", ix.Version(), path)
				}
			}
			if again, ok := ix.Lookup(e.Path); !ok || again.Path != e.Path {
				t.Fatalf("%s: %q resolves to %q, which resolves to %+v, %v", ix.Version(), path, e.Path, again, ok)
			}
		}
	})
}
