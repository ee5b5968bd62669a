package checkjson

import (
	"math/bits"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Append appends the proto3 JSON of msg (a *CheckResponse or
// *BatchCheckResponse) to dst: what protojson.Marshal writes, member for
// member in the same order, compact (without protojson's random spaces).
// It reports false, with dst as it was, for other types and for what
// protojson refuses or this path does not write (invalid UTF-8, a
// Duration out of range, a nil element of a list); the caller then uses
// protojson.
func Append(dst []byte, msg proto.Message) ([]byte, bool) {
	e := encoder{out: dst}
	switch m := msg.(type) {
	case *chaperonev1.CheckResponse:
		e.checkResponse(m)
	case *chaperonev1.BatchCheckResponse:
		e.out = append(e.out, '{')
		if len(m.GetResponses()) > 0 {
			e.out = append(e.out, `"responses":[`...)
			for i, r := range m.Responses {
				if i > 0 {
					e.out = append(e.out, ',')
				}
				e.checkResponse(r)
			}
			e.out = append(e.out, ']')
		}
		e.out = append(e.out, '}')
	default:
		return dst, false
	}
	if e.bad {
		return dst, false
	}
	return e.out, true
}

type encoder struct {
	out   []byte
	bad   bool // something protojson must write (or refuse)
	comma bool // a member was written in the current object
}

// member writes the separator and "name":.
func (e *encoder) member(name string) {
	if e.comma {
		e.out = append(e.out, ',')
	}
	e.comma = true
	e.out = append(e.out, '"')
	e.out = append(e.out, name...)
	e.out = append(e.out, '"', ':')
}

func (e *encoder) open() {
	e.out = append(e.out, '{')
	e.comma = false
}

func (e *encoder) close() {
	e.out = append(e.out, '}')
	e.comma = true
}

func (e *encoder) str(name, v string) {
	if v != "" {
		e.member(name)
		e.string(v)
	}
}

func (e *encoder) strs(name string, vs []string) {
	if len(vs) == 0 {
		return
	}
	e.member(name)
	e.out = append(e.out, '[')
	for i, v := range vs {
		if i > 0 {
			e.out = append(e.out, ',')
		}
		e.string(v)
	}
	e.out = append(e.out, ']')
}

func (e *encoder) checkResponse(m *chaperonev1.CheckResponse) {
	if m == nil {
		e.bad = true
		return
	}
	e.open()
	if d := m.Decision; d != 0 {
		e.member("decision")
		if name, ok := chaperonev1.Decision_name[int32(d)]; ok {
			e.out = append(e.out, '"')
			e.out = append(e.out, name...)
			e.out = append(e.out, '"')
		} else {
			e.out = strconv.AppendInt(e.out, int64(d), 10)
		}
	}
	if o := m.Obligations; o != nil {
		e.member("obligations")
		e.open()
		e.strs("maskPaths", o.MaskPaths)
		e.codings("redactLabels", o.RedactLabels)
		e.strs("auditTags", o.AuditTags)
		if o.PerEntryCheck {
			e.member("perEntryCheck")
			e.out = append(e.out, "true"...)
		}
		e.close()
	}
	if len(m.Reasons) > 0 {
		e.member("reasons")
		e.out = append(e.out, '[')
		for i, r := range m.Reasons {
			if r == nil {
				e.bad = true
				return
			}
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.open()
			e.str("code", r.Code)
			e.str("policyId", r.PolicyId)
			e.str("message", r.Message)
			e.close()
		}
		e.out = append(e.out, ']')
	}
	e.str("decisionId", m.DecisionId)
	e.str("bundleRevision", m.BundleRevision)
	if m.CacheTtl != nil {
		e.member("cacheTtl")
		e.duration(m.CacheTtl)
	}
	if len(m.Consents) > 0 {
		e.member("consents")
		e.out = append(e.out, '[')
		for i, c := range m.Consents {
			if c == nil {
				e.bad = true
				return
			}
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.open()
			e.str("id", c.Id)
			e.str("version", c.Version)
			e.close()
		}
		e.out = append(e.out, ']')
	}
	e.close()
}

func (e *encoder) codings(name string, cs []*chaperonev1.Coding) {
	if len(cs) == 0 {
		return
	}
	e.member(name)
	e.out = append(e.out, '[')
	for i, c := range cs {
		if c == nil {
			e.bad = true
			return
		}
		if i > 0 {
			e.out = append(e.out, ',')
		}
		e.open()
		e.str("system", c.System)
		e.str("code", c.Code)
		e.close()
	}
	e.out = append(e.out, ']')
}

// Duration bounds of proto3 JSON (about 10,000 years).
const maxDurationSeconds = 315576000000

// duration writes a Duration as protojson does: seconds with 0, 3, 6 or
// 9 fractional digits and "s"; out of range is protojson's error.
func (e *encoder) duration(d *durationpb.Duration) {
	secs, nanos := d.Seconds, int64(d.Nanos)
	if secs < -maxDurationSeconds || secs > maxDurationSeconds ||
		nanos <= -1e9 || nanos >= 1e9 || (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		e.bad = true
		return
	}
	e.out = append(e.out, '"')
	if secs < 0 || nanos < 0 {
		e.out = append(e.out, '-')
		secs, nanos = -secs, -nanos
	}
	e.out = strconv.AppendInt(e.out, secs, 10)
	if nanos != 0 {
		frac := strconv.AppendInt(make([]byte, 0, 10), 1e9+nanos, 10)[1:] // 9 digits
		switch {
		case nanos%1e6 == 0:
			frac = frac[:3]
		case nanos%1e3 == 0:
			frac = frac[:6]
		}
		e.out = append(e.out, '.')
		e.out = append(e.out, frac...)
	}
	e.out = append(e.out, 's', '"')
}

// string writes s as protojson does: '"', '\\' and control characters
// escaped (\b \f \n \r \t, others \u00XX), everything else as it is;
// invalid UTF-8 is protojson's error.
func (e *encoder) string(s string) {
	e.out = append(e.out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				e.bad = true
				return
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		e.out = append(e.out, s[start:i]...)
		e.out = append(e.out, '\\')
		switch c {
		case '"', '\\':
			e.out = append(e.out, c)
		case '\b':
			e.out = append(e.out, 'b')
		case '\f':
			e.out = append(e.out, 'f')
		case '\n':
			e.out = append(e.out, 'n')
		case '\r':
			e.out = append(e.out, 'r')
		case '\t':
			e.out = append(e.out, 't')
		default:
			e.out = append(e.out, 'u')
			e.out = append(e.out, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			e.out = strconv.AppendUint(e.out, uint64(c), 16)
		}
		i++
		start = i
	}
	e.out = append(e.out, s[start:]...)
	e.out = append(e.out, '"')
}
