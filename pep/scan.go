package pep

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// parse reads exactly one JSON value from b into a tree whose scalars and
// object sources are slices of b (b must not change while the tree is in
// use). It accepts what jsontext accepts with its default options (RFC
// 8259 with the I-JSON rules of RFC 7493: valid UTF-8, no unpaired
// surrogate escapes, no duplicate member names) and nesting up to
// maxDepth; the differential test holds it to that. It is a hand-written
// single pass because it is the hot path of every entry of every Bundle,
// several times faster than a token decoder.
func parse(b []byte) (*node, error) { return parseLevels(b, maxDepth) }

// parseLevels is parse with a tree only levels deep: objects and arrays
// below are checked as thoroughly but kept as kindRaw nodes holding their
// input bytes. levels 0 checks b and builds nothing but the root raw node.
func parseLevels(b []byte, levels int) (*node, error) {
	s := scanner{b: b, flat: levels, mems: make([]member, 0, 16), elems: make([]*node, 0, 16)}
	s.ws()
	n, err := s.value(0)
	if err != nil {
		return nil, err
	}
	s.ws()
	if s.i != len(b) {
		return nil, s.fail("data after the top-level value")
	}
	return n, nil
}

type scanner struct {
	b    []byte
	i    int
	slab []node // nodes are allocated in blocks
	flat int    // depth from which objects and arrays are not built
	skip bool   // inside such a value: check only
	// The members and items of the objects and arrays being read, moved to
	// a slice of the exact size when each ends.
	mems  []member
	elems []*node
}

func (s *scanner) node(k kind) *node {
	if len(s.slab) == 0 {
		// About one node for every 12 to 20 bytes of FHIR JSON; a shallow
		// tree needs a few.
		n := min(max((len(s.b)-s.i)/16, 8), 128)
		if s.flat < maxDepth {
			n = min(n, 32)
		}
		s.slab = make([]node, n)
	}
	n := &s.slab[0]
	s.slab = s.slab[1:]
	n.kind = k
	return n
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalidJSON, what, s.i)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) value(depth int) (*node, error) {
	if depth >= maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrInvalidJSON, maxDepth)
	}
	start := s.i
	switch c := s.peek(); {
	case (c == '{' || c == '[') && !s.skip && depth >= s.flat:
		s.skip = true
		var err error
		if c == '{' {
			_, err = s.object(depth)
		} else {
			_, err = s.array(depth)
		}
		s.skip = false
		if err != nil {
			return nil, err
		}
		n := s.node(kindRaw)
		n.raw = s.b[start:s.i:s.i]
		return n, nil
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		if err := s.str(); err != nil {
			return nil, err
		}
	case c == 't':
		if err := s.literal("true"); err != nil {
			return nil, err
		}
	case c == 'f':
		if err := s.literal("false"); err != nil {
			return nil, err
		}
	case c == 'n':
		if err := s.literal("null"); err != nil {
			return nil, err
		}
	case c == '-' || c >= '0' && c <= '9':
		if err := s.number(); err != nil {
			return nil, err
		}
	default:
		return nil, s.fail("invalid value")
	}
	if s.skip {
		return nil, nil
	}
	n := s.node(kindScalar)
	n.raw = s.b[start:s.i:s.i]
	return n, nil
}

// dupIndex is the member count from which duplicate names are found with
// a map instead of a scan.
const dupIndex = 16

func (s *scanner) object(depth int) (*node, error) {
	start := s.i
	s.i++
	var n *node
	if !s.skip {
		n = s.node(kindObject)
	}
	s.ws()
	if s.peek() == '}' {
		s.i++
		if n != nil {
			n.raw = s.b[start:s.i:s.i]
		}
		return n, nil
	}
	var seen map[string]struct{}
	base := len(s.mems)
	defer func() { s.mems = s.mems[:base] }()
	for {
		s.ws()
		if s.peek() != '"' {
			return nil, s.fail("expected a member name")
		}
		ns := s.i
		if err := s.str(); err != nil {
			return nil, err
		}
		nameEnd := s.i
		key := unquoteBytes(s.b[ns:nameEnd])
		if seen != nil {
			if _, dup := seen[string(key)]; dup {
				return nil, s.fail("duplicate member name")
			}
			seen[string(key)] = struct{}{}
		} else {
			for _, m := range s.mems[base:] {
				if bytes.Equal(m.key, key) {
					return nil, s.fail("duplicate member name")
				}
			}
			if len(s.mems)-base == dupIndex {
				seen = make(map[string]struct{}, 2*dupIndex)
				for _, m := range s.mems[base:] {
					seen[string(m.key)] = struct{}{}
				}
				seen[string(key)] = struct{}{}
			}
		}
		s.ws()
		if s.peek() != ':' {
			return nil, s.fail("expected ':'")
		}
		s.i++
		s.ws()
		v, err := s.value(depth + 1)
		if err != nil {
			return nil, err
		}
		s.mems = append(s.mems, member{key: key, raw: s.b[ns:nameEnd:nameEnd], val: v})
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			if n != nil {
				n.raw = s.b[start:s.i:s.i]
				n.mems = append([]member(nil), s.mems[base:]...)
			}
			return n, nil
		default:
			return nil, s.fail("expected ',' or '}'")
		}
	}
}

func (s *scanner) array(depth int) (*node, error) {
	s.i++
	var n *node
	if !s.skip {
		n = s.node(kindArray)
	}
	s.ws()
	if s.peek() == ']' {
		s.i++
		return n, nil
	}
	base := len(s.elems)
	defer func() { s.elems = s.elems[:base] }()
	for {
		s.ws()
		v, err := s.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if n != nil {
			s.elems = append(s.elems, v)
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			if n != nil {
				n.elems = append([]*node(nil), s.elems[base:]...)
			}
			return n, nil
		default:
			return nil, s.fail("expected ',' or ']'")
		}
	}
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return s.fail("invalid literal")
	}
	s.i += len(lit)
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.fail("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if s.digits() == 0 {
			return s.fail("invalid number")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return s.fail("invalid number")
		}
	}
	return nil
}

// str reads a string: escapes as RFC 8259 has them, surrogate escapes in
// pairs only, valid UTF-8, no control characters.
func (s *scanner) str() error {
	s.i++
	for {
		if s.i >= len(s.b) {
			return s.fail("unterminated string")
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\':
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				r, ok := s.hex4()
				if !ok {
					return s.fail("invalid \\u escape")
				}
				switch {
				case r >= 0xDC00 && r <= 0xDFFF:
					return s.fail("unpaired surrogate escape")
				case r >= 0xD800 && r <= 0xDBFF:
					if s.peek() != '\\' {
						return s.fail("unpaired surrogate escape")
					}
					s.i++
					if s.peek() != 'u' {
						return s.fail("unpaired surrogate escape")
					}
					lo, ok := s.hex4()
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return s.fail("unpaired surrogate escape")
					}
				}
			default:
				return s.fail("invalid escape")
			}
		case c < 0x20:
			return s.fail("control character in a string")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return s.fail("invalid UTF-8")
			}
			s.i += size
		}
	}
}

// hex4 reads the u and four hex digits of a \u escape.
func (s *scanner) hex4() (rune, bool) {
	if s.i+5 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i+1 : s.i+5] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	s.i += 5
	return r, true
}

// unquote returns the value of a valid JSON string literal.
func unquote(raw []byte) string { return string(unquoteBytes(raw)) }

// unquoteBytes returns the value of a valid JSON string literal: a slice
// of raw when it has no escapes.
func unquoteBytes(raw []byte) []byte {
	in := raw[1 : len(raw)-1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') < 0 {
		return in
	}
	b, err := jsontext.AppendUnquote(nil, raw)
	if err != nil {
		return nil // the scanner checked the literal
	}
	return b
}
