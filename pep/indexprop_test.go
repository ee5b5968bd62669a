package pep_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/fhir/elements"
	"github.com/chaperone-pdp/chaperone/pep"
)

// gen builds FHIR JSON from the element index, recording the path (in the
// notation of reaches) of every element it puts in.
type gen struct {
	t     *rapid.T
	ix    *elements.Index
	paths []string // instance paths, choice variants by their JSON name
}

// value makes a JSON value for one element of the index, reached by the
// lookup path lp and recorded as the instance path ip.
func (g *gen) element(obj map[string]any, el elements.Element, lp, ip string, depth int) {
	names := el.JSONNames()
	i := rapid.IntRange(0, len(names)-1).Draw(g.t, "variant")
	name, typ := names[i], "" // a content reference has no types
	if len(el.Types) > 0 {
		typ = el.Types[min(i, len(el.Types)-1)]
	}
	if typ == "Resource" || name == "resourceType" {
		return
	}
	lp, ip = lp+"."+name, ip+"."+name
	n := 1
	if el.Repeats() {
		n = rapid.IntRange(1, 2).Draw(g.t, "items")
	}
	primitive := typ != "" && (typ[0] >= 'a' && typ[0] <= 'z' || strings.HasPrefix(typ, "System."))
	if primitive {
		items := make([]any, n)
		sib := make([]any, n)
		withSib := rapid.Bool().Draw(g.t, "sibling")
		for k := range items {
			items[k] = "v"
			sib[k] = map[string]any{"id": "s"}
		}
		if rapid.Bool().Draw(g.t, "value") || !withSib {
			obj[name] = one(items, el.Repeats())
		}
		if withSib {
			obj["_"+name] = one(sib, el.Repeats())
		}
		g.paths = append(g.paths, ip)
		return
	}
	items := make([]any, n)
	for k := range items {
		child := map[string]any{}
		if depth < 3 {
			g.children(child, lp, ip, depth+1, 3)
		}
		if len(child) == 0 {
			child["id"] = "e"
			g.paths = append(g.paths, ip+".id")
		}
		items[k] = child
	}
	obj[name] = one(items, el.Repeats())
	g.paths = append(g.paths, ip)
}

// children adds up to max children of the type or element lp.
func (g *gen) children(obj map[string]any, lp, ip string, depth, max int) {
	kids := g.ix.Children(lp)
	if len(kids) == 0 {
		return
	}
	used := map[string]bool{}
	for range rapid.IntRange(0, max).Draw(g.t, "children") {
		el := rapid.SampledFrom(kids).Draw(g.t, "child")
		if used[el.Name] || el.Name == "contained" || el.Name == "meta" {
			continue
		}
		used[el.Name] = true
		g.element(obj, el, lp, ip, depth)
	}
}

func one(items []any, repeats bool) any {
	if repeats {
		return items
	}
	return items[0]
}

// TestMaskPropertyIndex: any resource type, any element the index has (up
// to three levels deep, through datatypes and backbones, every choice
// variant, primitive siblings, a contained resource of the same type):
// masking it leaves it nowhere in the output and removes nothing outside
// it.
func TestMaskPropertyIndex(t *testing.T) {
	t.Parallel()
	for _, v := range []elements.Version{elements.R4, elements.R5} {
		ix := elements.For(v)
		var types []string
		for _, ty := range ix.Types() {
			if ix.IsResource(ty) && ty != "Bundle" && ty != "Parameters" {
				types = append(types, ty)
			}
		}
		t.Run(string(v), func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, func(t *rapid.T) {
				typ := rapid.SampledFrom(types).Draw(t, "type")
				g := &gen{t: t, ix: ix}
				res := map[string]any{"resourceType": typ, "id": "r"}
				g.children(res, typ, typ, 1, 6)
				if rapid.Bool().Draw(t, "contained") {
					c := map[string]any{"resourceType": typ, "id": "c"}
					g.children(c, typ, typ, 1, 4)
					res["contained"] = []any{c}
				}
				if len(g.paths) == 0 {
					return
				}
				target := rapid.SampledFrom(g.paths).Draw(t, "target")
				// The mask names the element; the path that must be gone
				// names every variant of a choice in last place.
				mask := target
				segs := strings.Split(target, ".")
				el, ok := ix.Lookup(mask)
				if !ok {
					t.Fatalf("index cannot look up %s", mask)
				}
				gone := target
				if el.Choice {
					segs[len(segs)-1] = el.Name + "[x]"
					gone = strings.Join(segs, ".")
				}
				in, err := json.Marshal(res)
				if err != nil {
					t.Fatal(err)
				}
				out, withheld, err := pep.Apply(masks(mask), in)
				if err != nil || withheld {
					t.Fatalf("Apply(%s): withheld=%v err=%v\n%s", mask, withheld, err, in)
				}
				after := decode(t, out)
				if reaches(after, gone) {
					t.Fatalf("%s (mask %s) in output:\nin  %s\nout %s", gone, mask, in, out)
				}
				for _, p := range g.paths {
					if strings.HasPrefix(p+".", typ+".text.") {
						continue // the narrative of a masked resource goes
					}
					if strings.HasPrefix(target+".", p+".") || slices.ContainsFunc(otherVariants(ix, target), func(v string) bool {
						return strings.HasPrefix(p+".", v+".")
					}) {
						continue // the element, its variants, what is under them, and what held only them
					}
					if !reaches(after, p) {
						t.Fatalf("%s lost by mask %s:\nin  %s\nout %s", p, mask, in, out)
					}
				}
			})
		})
	}
}

// otherVariants lists the JSON names of the element at path, every
// variant of a choice (they all go), as instance paths.
func otherVariants(ix *elements.Index, path string) []string {
	el, ok := ix.Lookup(path)
	if !ok || !el.Choice {
		return []string{path}
	}
	base := path[:strings.LastIndex(path, ".")+1]
	var out []string
	for _, n := range el.JSONNames() {
		out = append(out, base+n)
	}
	return out
}
