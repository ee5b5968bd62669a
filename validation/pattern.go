package validation

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// patternMatchers are plain-Go matchers for the patterns the API's .proto
// files use on every request (references, ids, codes, reasons): the quick
// plan uses them instead of a compiled regular expression, which cost
// these patterns several microseconds per request. Each one accepts what
// its pattern accepts on valid UTF-8 and refuses invalid UTF-8 (where
// Go's regexp would read U+FFFD), so it is never laxer;
// TestPatternMatchersAgree holds them to their patterns.
var patternMatchers = map[string]func(string) bool{
	`^[A-Z][a-z]+(?:[A-Z][a-z]+)*/[A-Za-z0-9.-]{1,64}$`: anyReference,
	`^Patient/[A-Za-z0-9.-]{1,64}$`:                     func(s string) bool { return typedReference(s, "Patient/") },
	`^Organization/[A-Za-z0-9.-]{1,64}$`:                func(s string) bool { return typedReference(s, "Organization/") },
	`^[A-Z][A-Za-z]+$`:                                  resourceType,
	`^[A-Z][A-Z_]*$`: func(s string) bool {
		return s != "" && s[0] >= 'A' && s[0] <= 'Z' && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == ""
	},
	`^[a-z][a-z0-9-]*$`:     lowerToken,
	`^[A-Za-z0-9.-]{1,64}$`: fhirID,
	`^[^\s\p{Z}\p{C}]+$`:    func(s string) bool { return s != "" && noSpaceOrControl(s) },
	`^[^\s\p{Z}\p{C}]*$`:    noSpaceOrControl,
	`^[\s\p{Z}]*(?:[\p{L}\p{M}\p{N}\p{P}\p{S}][\s\p{Z}]*){20,}$`: reason20,
}

// resourceType: a capital and one or more letters.
func resourceType(s string) bool {
	if len(s) < 2 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// lowerToken: a lower-case letter, then lower-case letters, digits and
// hyphens.
func lowerToken(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// upperCode: a capital, then capitals and underscores.
func upperCode(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c == '_') {
			return false
		}
	}
	return true
}

// fhirID: 1 to 64 of [A-Za-z0-9.-].
func fhirID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func typedReference(s, prefix string) bool {
	return strings.HasPrefix(s, prefix) && fhirID(s[len(prefix):])
}

// anyReference: "Type/id", the type upper camel case (each capital
// followed by at least one lower-case letter).
func anyReference(s string) bool {
	slash := strings.IndexByte(s, '/')
	if slash < 2 || !fhirID(s[slash+1:]) {
		return false
	}
	typ := s[:slash]
	if typ[0] < 'A' || typ[0] > 'Z' {
		return false
	}
	for i := 0; i < len(typ); i++ {
		switch c := typ[i]; {
		case c >= 'a' && c <= 'z':
		case c >= 'A' && c <= 'Z':
			if i+1 == len(typ) || typ[i+1] < 'a' || typ[i+1] > 'z' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// isRegexpSpace is RE2's \s: [\t\n\f\r ].
func isRegexpSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\f' || r == '\r'
}

// noSpaceOrControl: no rune of \s, \p{Z} or \p{C}.
func noSpaceOrControl(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return false
		}
		if unicode.In(r, unicode.Z, unicode.C) {
			return false
		}
		i += n
	}
	return true
}

// reason20: only runes of \s, \p{Z} (spaces) and \p{L}, \p{M}, \p{N},
// \p{P}, \p{S} (non-space characters), at least 20 of the latter.
func reason20(s string) bool {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c > ' ' && c < 0x7f:
				n++
			case isRegexpSpace(rune(c)):
			default:
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return false
		case unicode.In(r, unicode.Z):
		case unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S):
			n++
		default:
			return false
		}
		i += size
	}
	return n >= 20
}
