package checkjson

import (
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Unmarshal reads data into msg (a *CheckRequest or *BatchCheckRequest)
// and reports true when it read it on the fast path: msg is then what
// protojson.Unmarshal (unknown members refused) makes of data. On false,
// msg holds a partial message and the caller must hand data to protojson,
// which resets msg first. Other message types always report false.
func Unmarshal(data []byte, msg proto.Message) bool {
	d := decoder{data: data}
	switch m := msg.(type) {
	case *chaperonev1.CheckRequest:
		m.Reset()
		if !d.checkRequest(m) {
			return false
		}
	case *chaperonev1.BatchCheckRequest:
		m.Reset()
		if !d.batchCheckRequest(m) {
			return false
		}
	default:
		return false
	}
	d.space()
	return d.i == len(d.data)
}

// decoder walks data once. Strings are sliced out of one copy of the
// body made on the first string, so a message costs one allocation for
// all its strings.
type decoder struct {
	data []byte
	i    int
	text string // string(data), made when the first string value is read
}

func (d *decoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c if it comes next.
func (d *decoder) next(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// span reads a JSON string without escapes and returns the bounds of its
// contents. Escapes, control characters and invalid UTF-8 are left to
// protojson.
func (d *decoder) span() (start, end int, ok bool) {
	if !d.next('"') {
		return 0, 0, false
	}
	start = d.i
	ascii := true
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			end = d.i
			d.i++
			if !ascii && !utf8.Valid(d.data[start:end]) {
				return 0, 0, false
			}
			return start, end, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return 0, 0, false
}

// name reads a member name and its colon. Members switch on
// string(name), which the compiler does without copying.
func (d *decoder) name() ([]byte, bool) {
	s, e, ok := d.span()
	if !ok || !d.next(':') {
		return nil, false
	}
	return d.data[s:e], true
}

func (d *decoder) str() (string, bool) {
	s, e, ok := d.span()
	if !ok {
		return "", false
	}
	if d.text == "" {
		d.text = string(d.data)
	}
	return d.text[s:e], true
}

// strings reads an array of strings.
func (d *decoder) strings(dst *[]string) bool {
	more, ok := d.open('[', ']')
	for ok && more {
		var s string
		if s, ok = d.str(); !ok {
			return false
		}
		*dst = append(*dst, s)
		more, ok = d.after(']')
	}
	return ok
}

// open reads the opening byte of an object or array: ok false when it is
// not there, more false when the closing one follows at once.
func (d *decoder) open(opening, closing byte) (more, ok bool) {
	if !d.next(opening) {
		return false, false
	}
	return !d.next(closing), true
}

// after reads what follows a member or element: a comma (more) or the
// closing byte.
func (d *decoder) after(closing byte) (more, ok bool) {
	if d.next(',') {
		return true, true
	}
	return false, d.next(closing)
}

// once sets field number n in seen, false when it was set: a field named
// twice (in either spelling) is protojson's error, left to it.
func once(seen *uint64, n uint) bool {
	if *seen&(1<<n) != 0 {
		return false
	}
	*seen |= 1 << n
	return true
}

// Each message is read by a loop over its members: the name picks the
// field (false for a name the message does not have, which protojson
// words), seen catches a field named twice.

func (d *decoder) batchCheckRequest(m *chaperonev1.BatchCheckRequest) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "requests":
			ok = once(&seen, 1) && d.checkRequests(&m.Requests)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

func (d *decoder) checkRequests(dst *[]*chaperonev1.CheckRequest) bool {
	more, ok := d.open('[', ']')
	for ok && more {
		r := &chaperonev1.CheckRequest{}
		*dst = append(*dst, r)
		if !d.checkRequest(r) {
			return false
		}
		more, ok = d.after(']')
	}
	return ok
}

func (d *decoder) checkRequest(m *chaperonev1.CheckRequest) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "subject":
			m.Subject = &chaperonev1.Subject{}
			ok = once(&seen, 1) && d.subject(m.Subject)
		case "action":
			ok = once(&seen, 2) && d.into(&m.Action)
		case "resource":
			m.Resource = &chaperonev1.Resource{}
			ok = once(&seen, 3) && d.resource(m.Resource)
		case "purposeOfUse", "purpose_of_use":
			ok = once(&seen, 4) && d.into(&m.PurposeOfUse)
		case "context":
			m.Context = &chaperonev1.Context{}
			ok = once(&seen, 5) && d.context(m.Context)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

func (d *decoder) into(dst *string) bool {
	s, ok := d.str()
	*dst = s
	return ok
}

func (d *decoder) subject(m *chaperonev1.Subject) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "id":
			ok = once(&seen, 1) && d.into(&m.Id)
		case "kind":
			ok = once(&seen, 2) && d.into(&m.Kind)
		case "identifiers":
			ok = once(&seen, 3) && d.identifiers(&m.Identifiers)
		case "roles":
			ok = once(&seen, 4) && d.strings(&m.Roles)
		case "organization":
			ok = once(&seen, 5) && d.into(&m.Organization)
		case "organizationIdentifiers", "organization_identifiers":
			ok = once(&seen, 6) && d.identifiers(&m.OrganizationIdentifiers)
		case "scopes":
			ok = once(&seen, 7) && d.strings(&m.Scopes)
		case "clientId", "client_id":
			ok = once(&seen, 8) && d.into(&m.ClientId)
		case "launchPatient", "launch_patient":
			ok = once(&seen, 9) && d.into(&m.LaunchPatient)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

func (d *decoder) identifiers(dst *[]*chaperonev1.Identifier) bool {
	more, ok := d.open('[', ']')
	for ok && more {
		m := &chaperonev1.Identifier{}
		*dst = append(*dst, m)
		if !d.identifier(m) {
			return false
		}
		more, ok = d.after(']')
	}
	return ok
}

func (d *decoder) identifier(m *chaperonev1.Identifier) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "system":
			ok = once(&seen, 1) && d.into(&m.System)
		case "value":
			ok = once(&seen, 2) && d.into(&m.Value)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

func (d *decoder) codings(dst *[]*chaperonev1.Coding) bool {
	more, ok := d.open('[', ']')
	for ok && more {
		m := &chaperonev1.Coding{}
		*dst = append(*dst, m)
		if !d.coding(m) {
			return false
		}
		more, ok = d.after(']')
	}
	return ok
}

func (d *decoder) coding(m *chaperonev1.Coding) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "system":
			ok = once(&seen, 1) && d.into(&m.System)
		case "code":
			ok = once(&seen, 2) && d.into(&m.Code)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

func (d *decoder) resource(m *chaperonev1.Resource) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "type":
			ok = once(&seen, 1) && d.into(&m.Type)
		case "id":
			ok = once(&seen, 2) && d.into(&m.Id)
		case "patient":
			ok = once(&seen, 3) && d.into(&m.Patient)
		case "securityLabels", "security_labels":
			ok = once(&seen, 4) && d.codings(&m.SecurityLabels)
		case "codes":
			ok = once(&seen, 5) && d.codings(&m.Codes)
		case "categories":
			ok = once(&seen, 6) && d.codings(&m.Categories)
		case "organization":
			ok = once(&seen, 7) && d.into(&m.Organization)
		case "author":
			ok = once(&seen, 8) && d.into(&m.Author)
		case "date":
			ok = once(&seen, 9) && d.timestamp(&m.Date)
		case "profiles":
			ok = once(&seen, 10) && d.strings(&m.Profiles)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

func (d *decoder) context(m *chaperonev1.Context) bool {
	var seen uint64
	more, ok := d.open('{', '}')
	for ok && more {
		name, nok := d.name()
		if !nok {
			return false
		}
		switch string(name) {
		case "time":
			ok = once(&seen, 1) && d.timestamp(&m.Time)
		case "breakGlassReason", "break_glass_reason":
			ok = once(&seen, 2) && d.into(&m.BreakGlassReason)
		case "ip":
			ok = once(&seen, 3) && d.into(&m.Ip)
		case "networkZone", "network_zone":
			ok = once(&seen, 4) && d.into(&m.NetworkZone)
		case "deviceTrust", "device_trust":
			ok = once(&seen, 5) && d.into(&m.DeviceTrust)
		case "correlationId", "correlation_id":
			ok = once(&seen, 6) && d.into(&m.CorrelationId)
		case "phase":
			ok = once(&seen, 7) && d.into(&m.Phase)
		default:
			return false
		}
		if !ok {
			return false
		}
		more, ok = d.after('}')
	}
	return ok
}

// Timestamp bounds of proto3 JSON: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59Z.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// timestamp reads an RFC 3339 string as protojson does (the same parse
// and the same checks); anything it refuses is left to it.
func (d *decoder) timestamp(dst **timestamppb.Timestamp) bool {
	s, e, ok := d.span()
	if !ok {
		return false
	}
	v := string(d.data[s:e])
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return false
	}
	secs := t.Unix()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return false
	}
	i := strings.LastIndexByte(v, '.')
	j := strings.LastIndexAny(v, "Z-+")
	if i >= 0 && j >= i && j-i > len(".999999999") {
		return false
	}
	*dst = &timestamppb.Timestamp{Seconds: secs, Nanos: int32(t.Nanosecond())}
	return true
}
