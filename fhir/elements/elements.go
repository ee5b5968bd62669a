package elements

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:generate bash internal/gen/generate.sh

// Version is a FHIR release.
type Version string

// The releases the package holds.
const (
	R4 Version = "R4" // FHIR 4.0.1
	R5 Version = "R5" // FHIR 5.0.0
)

var (
	//go:embed data/r4.tsv.gz
	r4Table []byte
	//go:embed data/r5.tsv.gz
	r5Table []byte
)

// loaded builds each release's index once, on first use.
var loaded = map[Version]*lazyIndex{
	R4: {table: r4Table},
	R5: {table: r5Table},
}

type lazyIndex struct {
	table []byte
	once  sync.Once
	ix    *Index
}

// For returns the index of release v, nil for a release the package does
// not hold. The index is built on first use, once; it is read-only and safe
// for concurrent use.
func For(v Version) *Index {
	l, ok := loaded[v]
	if !ok {
		return nil
	}
	l.once.Do(func() {
		ix, err := parse(v, l.table)
		if err != nil {
			// The tables are generated and covered by the package tests:
			// a table that does not parse is a build defect.
			panic(fmt.Sprintf("fhir/elements: %s table: %v", v, err))
		}
		l.ix = ix
	})
	return l.ix
}

// Kind is the kind of a FHIR type definition.
type Kind uint8

// The kinds of type definition.
const (
	Resource Kind = iota + 1
	ComplexType
	PrimitiveType
)

// TypeInfo describes a type definition of a release.
type TypeInfo struct {
	Name     string
	Kind     Kind
	Abstract bool
}

// Index is the element index of one FHIR release: every resource, complex
// and primitive datatype of its base definitions with the elements of
// their snapshots.
type Index struct {
	version  Version
	source   string // npm package, version and licence of the definitions
	types    map[string]TypeInfo
	elems    map[string]*entry   // definition path → element
	children map[string][]*entry // type name or element path → direct children, definition order
}

type entry struct {
	el  Element
	ref string // contentReference target path, "" for none
}

// Element is one element definition.
type Element struct {
	Path   string   // definition path, e.g. "Observation.value[x]", "HumanName.given"
	Name   string   // JSON member name without [x]: "value", "given"
	Choice bool     // a value[x] element
	Types  []string // FHIR type codes: "Quantity", "string", "BackboneElement", "Reference"...; shared, do not modify
	Min    int
	Max    int // -1 for "*"
}

// JSONNames returns the JSON member names the element may appear under:
// one per type for a choice element ("valueQuantity", "valueString"...),
// otherwise its name.
func (e Element) JSONNames() []string {
	if !e.Choice {
		return []string{e.Name}
	}
	out := make([]string, 0, len(e.Types))
	for _, t := range e.Types {
		out = append(out, e.Name+upperFirst(t))
	}
	return out
}

// Primitive reports whether every type of the element is a FHIR primitive
// type, so that its JSON value may have a "_name" sibling holding its id
// and extensions. FHIR primitive type names start with a lower-case letter
// ("string", "dateTime"), complex ones with an upper-case letter; the
// FHIRPath system types ("System.String") of id and value elements are
// primitive too.
func (e Element) Primitive() bool {
	if len(e.Types) == 0 {
		return false
	}
	for _, t := range e.Types {
		if !isPrimitiveName(t) {
			return false
		}
	}
	return true
}

// Repeats reports whether the element may occur more than once (a JSON
// array).
func (e Element) Repeats() bool { return e.Max < 0 || e.Max > 1 }

func isPrimitiveName(t string) bool {
	return t != "" && (t[0] >= 'a' && t[0] <= 'z' || strings.HasPrefix(t, "System."))
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// Version returns the release of the index.
func (ix *Index) Version() Version { return ix.version }

// Source names the package the index was generated from: npm name,
// version and licence ("hl7.fhir.r5.core@5.0.0 CC0-1.0").
func (ix *Index) Source() string { return ix.source }

// IsResource reports whether typ is a concrete resource type of the
// release ("Observation"); abstract ones (Resource, DomainResource) are
// not.
func (ix *Index) IsResource(typ string) bool {
	t, ok := ix.types[typ]
	return ok && t.Kind == Resource && !t.Abstract
}

// Type returns the type definition named typ.
func (ix *Index) Type(typ string) (TypeInfo, bool) {
	t, ok := ix.types[typ]
	return t, ok
}

// Types returns the names of every type definition of the release, in
// name order.
func (ix *Index) Types() []string {
	out := make([]string, 0, len(ix.types))
	for n := range ix.types {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Paths returns the definition path of every element of the release, in
// type name and then definition order.
func (ix *Index) Paths() []string {
	out := make([]string, 0, len(ix.elems))
	for _, n := range ix.Types() {
		out = appendPaths(out, ix, n)
	}
	return out
}

func appendPaths(out []string, ix *Index, parent string) []string {
	for _, c := range ix.children[parent] {
		out = append(out, c.el.Path)
		out = appendPaths(out, ix, c.el.Path)
	}
	return out
}

// Lookup resolves a dotted element path that starts with a resource or
// datatype name: "Patient.name", "Patient.name.given" (through the
// HumanName datatype), "Patient.contact.name.family" (through a backbone
// element), "Observation.value[x]" or "Observation.valueQuantity" (a
// concrete choice variant resolves to the value[x] element),
// "Questionnaire.item.item.linkId" (through a content reference). A path
// of a type name alone, with an empty or unknown segment, or that goes on
// past a primitive or a generic choice element, does not resolve.
func (ix *Index) Lookup(path string) (Element, bool) {
	e, _, ok := ix.resolve(path)
	if !ok || e == nil {
		return Element{}, false
	}
	return e.el, true
}

// Children returns the elements directly under a type name or element
// path, in definition order: those of a backbone element, of the datatype
// of a single-typed element or of a concrete choice variant. It returns
// nil for a path that does not resolve or has nothing under it.
func (ix *Index) Children(path string) []Element {
	_, ctx, ok := ix.resolve(path)
	if !ok || ctx == "" {
		return nil
	}
	kids := ix.children[ctx]
	out := make([]Element, len(kids))
	for i, k := range kids {
		out[i] = k.el
	}
	return out
}

// resolve walks path and returns its element (nil for a bare type name)
// and the context its children are listed under ("" for none).
func (ix *Index) resolve(path string) (*entry, string, bool) {
	typ, rest, _ := strings.Cut(path, ".")
	if _, ok := ix.types[typ]; !ok {
		return nil, "", false
	}
	ctx := typ
	var cur *entry
	for rest != "" {
		if ctx == "" {
			return nil, "", false
		}
		var seg string
		var more bool
		seg, rest, more = strings.Cut(rest, ".")
		if seg == "" || more && rest == "" {
			return nil, "", false
		}
		e, variant := ix.child(ctx, seg)
		if e == nil {
			return nil, "", false
		}
		cur = e
		ctx = ix.contextOf(e, variant)
	}
	return cur, ctx, true
}

// child finds the element named seg directly under ctx: by name, by
// "name[x]" for a choice element, or by a concrete choice variant
// ("valueQuantity"), whose type it returns.
func (ix *Index) child(ctx, seg string) (*entry, string) {
	for _, c := range ix.children[ctx] {
		if !c.el.Choice {
			if c.el.Name == seg {
				return c, ""
			}
			continue
		}
		if seg == c.el.Name+"[x]" {
			return c, ""
		}
		if suffix, ok := strings.CutPrefix(seg, c.el.Name); ok && suffix != "" {
			for _, t := range c.el.Types {
				if upperFirst(t) == suffix {
					return c, t
				}
			}
		}
	}
	return nil, ""
}

// contextOf is where the children of e are listed: its own path for an
// inline backbone element, the target of a content reference, the
// datatype of a single-typed element or of the chosen choice variant; ""
// for a primitive, a generic choice element or a type the release does
// not define.
func (ix *Index) contextOf(e *entry, variant string) string {
	if e.ref != "" {
		return e.ref
	}
	if len(ix.children[e.el.Path]) > 0 {
		return e.el.Path
	}
	typ := variant
	if typ == "" {
		if e.el.Choice || len(e.el.Types) != 1 {
			return ""
		}
		typ = e.el.Types[0]
	}
	if t, ok := ix.types[typ]; !ok || t.Kind == PrimitiveType {
		return ""
	}
	return typ
}

// parse reads a generated table (see internal/gen).
func parse(v Version, gz []byte) (*Index, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	ix := &Index{
		version:  v,
		types:    make(map[string]TypeInfo, 256),
		elems:    make(map[string]*entry, 10000),
		children: make(map[string][]*entry, 4000),
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var typ string
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if src, ok := strings.CutPrefix(text, "#source\t"); ok {
			ix.source = strings.ReplaceAll(src, "\t", " ")
			continue
		}
		f := strings.Split(text, "\t")
		if def, ok := strings.CutPrefix(text, "="); ok {
			f = strings.Split(def, "\t")
			if len(f) != 3 {
				return nil, fmt.Errorf("line %d: bad type line", line)
			}
			var k Kind
			switch f[1] {
			case "resource":
				k = Resource
			case "complex-type":
				k = ComplexType
			case "primitive-type":
				k = PrimitiveType
			default:
				return nil, fmt.Errorf("line %d: unknown kind %q", line, f[1])
			}
			typ = f[0]
			ix.types[typ] = TypeInfo{Name: typ, Kind: k, Abstract: f[2] == "1"}
			continue
		}
		if len(f) != 5 || typ == "" || !strings.HasPrefix(f[0], typ+".") {
			return nil, fmt.Errorf("line %d: bad element line", line)
		}
		min, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: min: %w", line, err)
		}
		max := -1
		if f[2] != "*" {
			if max, err = strconv.Atoi(f[2]); err != nil {
				return nil, fmt.Errorf("line %d: max: %w", line, err)
			}
		}
		path := f[0]
		parent, last := path[:strings.LastIndexByte(path, '.')], path[strings.LastIndexByte(path, '.')+1:]
		name, choice := strings.CutSuffix(last, "[x]")
		var types []string
		if f[3] != "" {
			types = strings.Split(f[3], ",")
		}
		e := &entry{el: Element{Path: path, Name: name, Choice: choice, Types: types, Min: min, Max: max}, ref: f[4]}
		if _, dup := ix.elems[path]; dup {
			return nil, fmt.Errorf("line %d: duplicate %s", line, path)
		}
		if parent != typ {
			if _, ok := ix.elems[parent]; !ok {
				return nil, fmt.Errorf("line %d: %s before its parent", line, path)
			}
		}
		ix.elems[path] = e
		ix.children[parent] = append(ix.children[parent], e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for p, e := range ix.elems {
		if e.ref != "" {
			if _, ok := ix.elems[e.ref]; !ok {
				return nil, fmt.Errorf("%s: content reference to unknown %s", p, e.ref)
			}
		}
	}
	return ix, nil
}
