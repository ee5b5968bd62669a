package pep

import (
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
	raw   []byte   // kindScalar, kindRaw: the value; kindObject: its input bytes
	mems  []member // kindObject, in input order
	elems []*node  // kindArray
}

type member struct {
	key []byte // the name, unescaped (a slice of the input when it had no escapes)
	raw []byte // the quoted name as it came in; nil for a member added here
	val *node
}

func (m member) is(name string) bool { return string(m.key) == name }

func newMember(name string, v *node) member { return member{key: []byte(name), val: v} }

// get returns the value of the member called name, or nil.
func (n *node) get(name string) *node {
	if n == nil || n.kind != kindObject {
		return nil
	}
	for i := range n.mems {
		if n.mems[i].is(name) {
			return n.mems[i].val
		}
	}
	return nil
}

// remove deletes the member called name and reports whether it was there.
func (n *node) remove(name string) bool {
	for i := range n.mems {
		if n.mems[i].is(name) {
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
	return unquote(n.raw), true
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
			if m.raw != nil {
				dst = append(append(dst, m.raw...), ':')
			} else {
				dst = appendName(dst, m.key)
			}
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
func appendName[S ~[]byte | ~string](dst []byte, name S) []byte {
	dst, _ = jsontext.AppendQuote(dst, name) // names came from valid UTF-8 input
	return append(dst, ':')
}

// stringNode is a JSON string scalar.
func stringNode(s string) *node {
	b, _ := jsontext.AppendQuote(nil, s)
	return &node{kind: kindScalar, raw: b}
}
