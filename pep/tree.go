package pep

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

// maxDepth bounds the nesting of the JSON this package reads. FHIR
// resources are far shallower; deeper input is refused, not recursed into.
const maxDepth = 512

// kind of a node: an object, an array, a scalar kept as its input bytes, or
// a verbatim JSON value spliced in (an entry resource already enforced).
type kind uint8

const (
	kindScalar kind = iota
	kindObject
	kindArray
	kindRaw
)

// node is one JSON value in an order-preserving tree. Scalars keep their
// exact input bytes, so numbers (1.50, 1e3) and string escapes are written
// out as they came in.
type node struct {
	kind  kind
	raw   []byte   // kindScalar, kindRaw
	mems  []member // kindObject, in input order
	elems []*node  // kindArray
}

type member struct {
	name string
	val  *node
}

// get returns the value of the member called name, or nil.
func (n *node) get(name string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	for i := range n.mems {
		if n.mems[i].name == name {
			return n.mems[i].val
		}
	}
	return nil
}

// remove deletes the member called name and reports whether it was there.
func (n *node) remove(name string) bool {
	for i := range n.mems {
		if n.mems[i].name == name {
			n.mems = append(n.mems[:i], n.mems[i+1:]...)
			return true
		}
	}
	return false
}

// str returns the value of a JSON string node.
func (n *node) str() (string, bool) {
	if n == nil || n.kind != kindScalar || len(n.raw) == 0 || n.raw[0] != '"' {
		return "", false
	}
	b, err := jsontext.AppendUnquote(nil, n.raw)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// parse reads exactly one JSON value from b. Duplicate member names and
// invalid UTF-8 are errors (a duplicate name is read differently by
// different parsers, so it is never passed on).
func parse(b []byte) (*node, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	n, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the top-level value", ErrInvalidJSON)
	}
	return n, nil
}

func parseValue(dec *jsontext.Decoder, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrInvalidJSON, maxDepth)
	}
	switch dec.PeekKind() {
	case '{':
		if _, err := dec.ReadToken(); err != nil {
			return nil, wrapJSON(err)
		}
		n := &node{kind: kindObject}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, wrapJSON(err)
			}
			name := tok.String()
			v, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			n.mems = append(n.mems, member{name: name, val: v})
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, wrapJSON(err)
		}
		return n, nil
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return nil, wrapJSON(err)
		}
		n := &node{kind: kindArray}
		for dec.PeekKind() != ']' {
			v, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			n.elems = append(n.elems, v)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, wrapJSON(err)
		}
		return n, nil
	default:
		v, err := dec.ReadValue()
		if err != nil {
			return nil, wrapJSON(err)
		}
		return &node{kind: kindScalar, raw: bytes.Clone(v)}, nil
	}
}

func wrapJSON(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if errors.Is(err, ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidJSON, err)
}

// appendJSON writes n compactly.
func appendJSON(dst []byte, n *node) []byte {
	switch n.kind {
	case kindObject:
		dst = append(dst, '{')
		for i, m := range n.mems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendName(dst, m.name)
			dst = appendJSON(dst, m.val)
		}
		return append(dst, '}')
	case kindArray:
		dst = append(dst, '[')
		for i, e := range n.elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, e)
		}
		return append(dst, ']')
	default:
		return append(dst, n.raw...)
	}
}

// appendName writes "name": for a name read from valid JSON.
func appendName(dst []byte, name string) []byte {
	dst, _ = jsontext.AppendQuote(dst, name) // names came from valid UTF-8 input
	return append(dst, ':')
}

// stringNode is a JSON string scalar.
func stringNode(s string) *node {
	b, _ := jsontext.AppendQuote(nil, s)
	return &node{kind: kindScalar, raw: b}
}
