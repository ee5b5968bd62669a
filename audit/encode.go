package audit

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends the JSON of r, byte for byte what encoding/json's
// Marshal writes for it (same field order, omitempty, HTML-safe string
// escapes, RFC 3339 times), without reflection or allocation. Decision
// records, one per answered request, take this path; the other kinds, and
// any record with a time Marshal would refuse or write with a zone, go
// through Marshal.
//
// A field added to [Record] must either be written here or make
// [fastPath] false when set: TestEncoderCoversEveryField fills every
// field by reflection and compares with Marshal, so a field this encoder
// silently drops fails it.
func appendRecord(dst []byte, r *Record) ([]byte, error) {
	if !fastPath(r) {
		b, err := json.Marshal(r)
		return append(dst, b...), err
	}
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = appendField(dst, `,"prev":`, r.Prev)
	dst = appendField(dst, `,"kind":`, string(r.Kind))
	dst = appendTime(append(dst, `,"time":`...), r.Time)
	dst = appendOmit(dst, `,"caller":`, r.Caller)
	dst = appendOmit(dst, `,"decisionId":`, r.DecisionID)
	if s := r.Subject; s != nil {
		dst = appendField(dst, `,"subject":{"id":`, s.ID)
		dst = appendOmit(dst, `,"kind":`, s.Kind)
		dst = appendStrings(dst, `,"roles":`, s.Roles)
		dst = appendOmit(dst, `,"organization":`, s.Organization)
		dst = appendOmit(dst, `,"clientId":`, s.ClientID)
		dst = appendIdentifiers(dst, `,"identifiers":`, s.Identifiers)
		dst = appendIdentifiers(dst, `,"organizationIdentifiers":`, s.OrganizationIdentifiers)
		dst = appendStrings(dst, `,"scopes":`, s.Scopes)
		dst = appendOmit(dst, `,"launchPatient":`, s.LaunchPatient)
		dst = append(dst, '}')
	}
	dst = appendOmit(dst, `,"action":`, r.Action)
	if x := r.Resource; x != nil {
		dst = appendField(dst, `,"resource":{"type":`, x.Type)
		dst = appendOmit(dst, `,"id":`, x.ID)
		dst = appendOmit(dst, `,"patient":`, x.Patient)
		dst = appendOmit(dst, `,"organization":`, x.Organization)
		dst = appendCodings(dst, `,"labels":`, x.Labels)
		dst = appendOmit(dst, `,"author":`, x.Author)
		dst = appendCodings(dst, `,"codes":`, x.Codes)
		dst = appendCodings(dst, `,"categories":`, x.Categories)
		if x.Date != nil {
			dst = appendTime(append(dst, `,"date":`...), *x.Date)
		}
		dst = appendStrings(dst, `,"profiles":`, x.Profiles)
		dst = append(dst, '}')
	}
	dst = appendOmit(dst, `,"purposeOfUse":`, r.PurposeOfUse)
	if c := r.Context; c != nil {
		dst = append(dst, `,"context":{`...)
		n := len(dst)
		if c.RequestTime != nil {
			dst = appendTime(append(dst, `,"requestTime":`...), *c.RequestTime)
		}
		dst = appendOmit(dst, `,"ip":`, c.IP)
		dst = appendOmit(dst, `,"networkZone":`, c.NetworkZone)
		dst = appendOmit(dst, `,"correlationId":`, c.CorrelationID)
		dst = appendOmit(dst, `,"breakGlassReason":`, c.BreakGlassReason)
		dst = appendOmit(dst, `,"deviceTrust":`, c.DeviceTrust)
		dst = appendOmit(dst, `,"phase":`, c.Phase)
		dst = closeObject(dst, n)
	}
	dst = appendOmit(dst, `,"decision":`, r.Decision)
	if len(r.Reasons) > 0 {
		dst = append(dst, `,"reasons":[`...)
		for i, x := range r.Reasons {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendField(dst, `{"code":`, x.Code)
			dst = appendOmit(dst, `,"policyId":`, x.PolicyID)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if o := r.Obligations; o != nil {
		dst = append(dst, `,"obligations":{`...)
		n := len(dst)
		dst = appendStrings(dst, `,"maskPaths":`, o.MaskPaths)
		dst = appendCodings(dst, `,"redactLabels":`, o.RedactLabels)
		dst = appendStrings(dst, `,"auditTags":`, o.AuditTags)
		dst = closeObject(dst, n)
	}
	dst = appendOmit(dst, `,"bundleRevision":`, r.BundleRevision)
	if len(r.Consents) > 0 {
		dst = append(dst, `,"consents":[`...)
		for i, x := range r.Consents {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendField(dst, `{"id":`, x.ID)
			dst = appendOmit(dst, `,"version":`, x.Version)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if x := r.Index; x != nil {
		dst = append(dst, `,"index":{`...)
		n := len(dst)
		dst = appendOmit(dst, `,"patient":`, x.Patient)
		dst = appendOmit(dst, `,"subject":`, x.Subject)
		dst = closeObject(dst, n)
	}
	return append(dst, '}'), nil
}

// fastPath reports whether appendRecord writes r itself: a decision record
// whose fields are all ones it knows, with plain times. The fields listed
// in marshalOnly (encode_test.go) send a record to Marshal.
func fastPath(r *Record) bool {
	return r.Kind == KindDecision && r.Review == nil && r.Checkpoint == nil && r.Drop == nil && r.Change == nil && r.Opening == nil && r.Prune == nil &&
		plainTime(r.Time) && (r.Context == nil || r.Context.RequestTime == nil || plainTime(*r.Context.RequestTime)) &&
		(r.Resource == nil || r.Resource.Date == nil || plainTime(*r.Resource.Date))
}

// plainTime is a time encoding/json writes as this encoder does: in UTC,
// with a year of four digits.
func plainTime(t time.Time) bool {
	_, off := t.Zone()
	return off == 0 && t.Location() == time.UTC && t.Year() >= 0 && t.Year() <= 9999
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// closeObject ends an object whose members, written from index n, each
// began with a comma: the first comma goes.
func closeObject(dst []byte, n int) []byte {
	if len(dst) > n {
		dst = append(dst[:n], dst[n+1:]...)
	}
	return append(dst, '}')
}

func appendField(dst []byte, key, s string) []byte {
	return appendString(append(dst, key...), s)
}

// appendOmit writes key and s unless s is empty (omitempty).
func appendOmit(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendField(dst, key, s)
}

func appendStrings(dst []byte, key string, ss []string) []byte {
	if len(ss) == 0 {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

func appendCodings(dst []byte, key string, cs []Coding) []byte {
	if len(cs) == 0 {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '[')
	for i, c := range cs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if c.System != "" {
			dst = appendField(dst, `"system":`, c.System)
			dst = append(dst, ',')
		}
		dst = appendField(dst, `"code":`, c.Code)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendIdentifiers(dst []byte, key string, ids []Identifier) []byte {
	if len(ids) == 0 {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '[')
	for i, x := range ids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if x.System != "" {
			dst = appendField(dst, `"system":`, x.System)
			dst = append(dst, ',')
		}
		dst = appendField(dst, `"value":`, x.Value)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does:
// <, > and & as \u escapes, invalid UTF-8 as \ufffd, U+2028 and U+2029
// escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
