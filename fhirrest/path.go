package fhirrest

import (
	"fmt"
	"strings"
)

// splitPath checks a raw origin-form path and returns its segments after
// the leading "/" (so "/fhir/Patient/1" is ["fhir", "Patient", "1"]; "/"
// is [""]). No segment a FHIR request needs holds a percent-encoding, so
// any escape is refused: %2F and %2E with their own reasons (they hide a
// slash or a dot segment from a gateway that matches the raw path), %25
// as double encoding, the rest as an encoded path.
func splitPath(raw string) ([]string, error) {
	if !strings.HasPrefix(raw, "/") {
		return nil, refuse(ReasonBadPath, "the path does not start with /")
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return nil, refuse(ReasonBadPath, "malformed percent-encoding")
			}
			switch strings.ToUpper(raw[i+1 : i+3]) {
			case "2F":
				return nil, ErrEncodedSlash
			case "2E":
				return nil, ErrEncodedDot
			case "25":
				return nil, ErrDoubleEncoding
			case "5C":
				return nil, refuse(ReasonEncodedPath, "encoded backslash")
			}
			return nil, ErrEncodedPath
		case c <= ' ' || c >= 0x7f || c == '\\' || c == '?' || c == '#':
			return nil, refuse(ReasonBadPath, fmt.Sprintf("byte %#x at offset %d", c, i))
		}
	}
	segs := strings.Split(raw[1:], "/")
	for i, s := range segs {
		switch s {
		case ".", "..":
			return nil, ErrDotSegment
		case "":
			// "/" alone and a base followed by one trailing slash are the
			// only places an empty segment is let through; the caller
			// decides.
			if i != len(segs)-1 {
				return nil, ErrEmptySegment
			}
		}
	}
	return segs, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// relative strips the base segments from segs. The base and the root may
// end with one "/" ("/fhir/" is the root of base "/fhir"); any other
// trailing slash is an empty segment.
func relative(base, segs []string) ([]string, error) {
	if len(segs) < len(base) {
		return nil, ErrOutsideBase
	}
	for i, b := range base {
		if segs[i] != b {
			return nil, ErrOutsideBase
		}
	}
	rel := segs[len(base):]
	switch {
	case len(rel) == 1 && rel[0] == "":
		return nil, nil
	case len(rel) > 0 && rel[len(rel)-1] == "":
		return nil, ErrEmptySegment
	}
	return rel, nil
}

// validID reports whether s is a FHIR id: 1 to 64 of [A-Za-z0-9\-\.].
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkID refuses what is not a FHIR id, naming the segment's role.
func checkID(s, what string) error {
	if !validID(s) {
		return refuse(ReasonBadID, what+" is not a FHIR id")
	}
	return nil
}

// operationName returns the name of an operation segment ("$everything"
// → "everything"), ok false when seg is not one.
func operationName(seg string) (string, bool) {
	name, ok := strings.CutPrefix(seg, "$")
	if !ok || len(name) == 0 || len(name) > 64 || !isLetter(name[0]) {
		return "", false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !(isLetter(c) || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return name, true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
