package extauthz

import (
	"encoding/base64"
	"unicode/utf8"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// obligationsJSON is the JSON of o as protojson.Marshal writes it (same
// member names, empty members left out, the same values), written
// without reflection: it was 8% of the door's CPU per ALLOW. ok is false
// when a string is not UTF-8, for which protojson fails (the caller then
// calls it to have its error). Only the bytes between values may differ
// from protojson's, whose spacing is deliberately unstable anyway; a
// property test holds the two to the same message.
func obligationsJSON(buf []byte, o *chaperonev1.Obligations) (_ []byte, ok bool) {
	b := append(buf, '{')
	first := true
	member := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	strs := func(name string, vs []string) bool {
		if len(vs) == 0 {
			return true
		}
		member(name)
		b = append(b, '[')
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendString(b, v); !ok {
				return false
			}
		}
		b = append(b, ']')
		return true
	}
	if !strs("maskPaths", o.GetMaskPaths()) {
		return nil, false
	}
	if ls := o.GetRedactLabels(); len(ls) > 0 {
		member("redactLabels")
		b = append(b, '[')
		for i, l := range ls {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			sep := false
			if s := l.GetSystem(); s != "" {
				b = append(b, `"system":`...)
				if b, ok = appendString(b, s); !ok {
					return nil, false
				}
				sep = true
			}
			if c := l.GetCode(); c != "" {
				if sep {
					b = append(b, ',')
				}
				b = append(b, `"code":`...)
				if b, ok = appendString(b, c); !ok {
					return nil, false
				}
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if !strs("auditTags", o.GetAuditTags()) {
		return nil, false
	}
	if o.GetPerEntryCheck() {
		member("perEntryCheck")
		b = append(b, "true"...)
	}
	return append(b, '}'), true
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; ok is false when s is not
// UTF-8.
func appendString(b []byte, s string) ([]byte, bool) {
	if !utf8.ValidString(s) {
		return nil, false
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

// obligationsHeader is the x-chaperone-obligations value of o: its JSON,
// base64url without padding.
func obligationsHeader(o *chaperonev1.Obligations) (string, bool) {
	var arr [256]byte
	j, ok := obligationsJSON(arr[:0], o)
	if !ok {
		return "", false
	}
	return base64.RawURLEncoding.EncodeToString(j), true
}
