package fhirconsent

import (
	"strings"
	"time"

	"github.com/chaperone-pdp/chaperone/fhir"
)

// Code systems the compiled form refers to, in their canonical spelling.
const (
	SystemConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemActReason       = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	SystemParticipation   = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	SystemRoleClass       = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
	SystemConsentAction   = "http://terminology.hl7.org/CodeSystem/consentaction"
	SystemConsentScope    = "http://terminology.hl7.org/CodeSystem/consentscope"
	SystemConsentCategory = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
	SystemConsentPolicy   = "http://terminology.hl7.org/CodeSystem/consentpolicycodes"
	SystemResourceTypes   = "http://hl7.org/fhir/resource-types"
	SystemLOINC           = "http://loinc.org"
	SystemSNOMED          = "http://snomed.info/sct"
)

const (
	thoCodeSystem = "http://terminology.hl7.org/CodeSystem/"
	thoValueSet   = "http://terminology.hl7.org/ValueSet/"
	fhirV3        = "http://hl7.org/fhir/v3/"
	fhirBase      = "http://hl7.org/fhir/"
)

// CanonicalSystem returns the canonical spelling of a code system URI: no
// trailing slash, HL7 v2/v3 systems under terminology.hl7.org, value set
// URLs that people use as systems mapped to their code system, and the
// OIDs of common systems as URLs. It allocates only for legacy spellings.
func CanonicalSystem(s string) string {
	s = strings.TrimRight(s, "/")
	switch s {
	case "", SystemConfidentiality, SystemActCode, SystemActReason, SystemLOINC, SystemResourceTypes,
		SystemConsentAction, SystemConsentScope, SystemParticipation:
		return s
	case "urn:oid:2.16.840.1.113883.5.25":
		return SystemConfidentiality
	case "urn:oid:2.16.840.1.113883.5.4", "urn:oid:2.16.840.1.113883.1.11.20428":
		return SystemActCode
	case "urn:oid:2.16.840.1.113883.5.8", "urn:oid:2.16.840.1.113883.1.11.20448":
		return SystemActReason
	case "urn:oid:2.16.840.1.113883.5.90":
		return SystemParticipation
	case "urn:oid:2.16.840.1.113883.5.110":
		return SystemRoleClass
	case "urn:oid:2.16.840.1.113883.6.1":
		return SystemLOINC
	case "urn:oid:2.16.840.1.113883.6.96", "http://snomed.info/id":
		return SystemSNOMED
	}
	var name string
	switch {
	case strings.HasPrefix(s, thoValueSet+"v3-"):
		name = s[len(thoValueSet):]
	case strings.HasPrefix(s, fhirV3):
		name = "v3-" + s[len(fhirV3):]
	case strings.HasPrefix(s, "http://hl7.org/fhir/ValueSet/v3-"):
		name = s[len("http://hl7.org/fhir/ValueSet/"):]
	case strings.HasPrefix(s, fhirBase+"consent") && !strings.Contains(s[len(fhirBase):], "/"):
		return thoCodeSystem + s[len(fhirBase):]
	case s == "http://hl7.org/fhir/ValueSet/resource-types" || s == "http://hl7.org/fhir/ValueSet/consent-content-class":
		return SystemResourceTypes
	default:
		return s
	}
	switch name {
	case "v3-InformationSensitivityPolicy", "v3-ActCodeSecurity", "v3-SecurityLabel", "v3-ActPrivacyLaw",
		"v3-ActConsentDirective", "v3-ActPrivacyPolicy", "v3-ActUSPrivacyLaw", "v3-ActInformationSensitivityPolicy":
		return SystemActCode
	case "v3-PurposeOfUse", "v3-ActReason":
		return SystemActReason
	case "v3-ConfidentialityClassification", "v3-Confidentiality":
		return SystemConfidentiality
	}
	return thoCodeSystem + name
}

// CanonicalCoding is c with its system canonicalised.
func CanonicalCoding(c Coding) Coding {
	return Coding{System: CanonicalSystem(c.System), Code: c.Code}
}

// SameSystem reports whether two canonical systems name the same code
// system; an empty system matches any (the code alone was given).
func SameSystem(a, b string) bool { return a == "" || b == "" || a == b }

// MaxIDLength is the longest FHIR resource id.
const MaxIDLength = 64

// ValidID reports whether id is a FHIR resource id: 1 to 64 of
// [A-Za-z0-9.-].
func ValidID(id string) bool {
	if len(id) < 1 || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// LiteralReference reports whether ref is a FHIR literal reference in the
// one spelling the API accepts: "Type/id", the type upper camel case
// ("Patient", "RelatedPerson"), the id 1 to 64 of [A-Za-z0-9.-]. The API's
// reference fields hold the same grammar (the patterns in the .proto
// files), so a consent's references and a request's meet in one spelling:
// a consent whose reference could never equal a request's is refused, not
// stored to be silently ineffective.
func LiteralReference(ref string) bool {
	slash := strings.IndexByte(ref, '/')
	if slash < 2 || len(ref)-slash-1 < 1 || len(ref)-slash-1 > 64 {
		return false
	}
	typ, id := ref[:slash], ref[slash+1:]
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		switch {
		case c >= 'a' && c <= 'z':
		case c >= 'A' && c <= 'Z':
			// a capital starts a word of at least one lower-case letter
			if i+1 >= len(typ) || typ[i+1] < 'a' || typ[i+1] > 'z' {
				return false
			}
		default:
			return false
		}
	}
	if typ[0] < 'A' || typ[0] > 'Z' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// CanonicalReference reduces a FHIR reference to "Type/id": an absolute
// URL loses its base, a versioned reference its "/_history/..." part. It
// does not allocate.
func CanonicalReference(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimRight(ref, "/")
	if strings.Contains(ref, "://") || strings.HasPrefix(ref, "urn:") {
		if strings.HasPrefix(ref, "urn:") {
			return ref
		}
		// Keep the last two segments: .../Type/id.
		j := strings.LastIndexByte(ref, '/')
		if j <= 0 {
			return ref
		}
		k := strings.LastIndexByte(ref[:j], '/')
		if k < 0 {
			return ref
		}
		typ := ref[k+1 : j]
		if typ == "" || typ[0] < 'A' || typ[0] > 'Z' {
			return ref
		}
		return ref[k+1:]
	}
	return ref
}

// Confidentiality levels of v3-Confidentiality codes, U (1) to V (6).
const (
	LevelU int8 = iota + 1
	LevelL
	LevelM
	LevelN
	LevelR
	LevelV
)

var confidentialityCodes = [...]string{"", "U", "L", "M", "N", "R", "V"}

// ConfidentialityLevel is the level of a v3-Confidentiality coding (system
// canonical or empty), 0 when c is not one.
func ConfidentialityLevel(c Coding) int8 {
	if c.System != "" && c.System != SystemConfidentiality {
		return 0
	}
	for i := 1; i < len(confidentialityCodes); i++ {
		if c.Code == confidentialityCodes[i] {
			return int8(i)
		}
	}
	return 0
}

// Request actions (FHIR interactions) as bits, from package fhir.
const (
	ActionRead      = uint16(fhir.ReadBit)
	ActionVread     = uint16(fhir.VreadBit)
	ActionSearch    = uint16(fhir.SearchBit)
	ActionHistory   = uint16(fhir.HistoryBit)
	ActionCreate    = uint16(fhir.CreateBit)
	ActionUpdate    = uint16(fhir.UpdateBit)
	ActionPatch     = uint16(fhir.PatchBit)
	ActionDelete    = uint16(fhir.DeleteBit)
	ActionExport    = uint16(fhir.ExportBit)
	ActionOperation = uint16(fhir.OperationBit)
)

const (
	actionsAccess = uint16(fhir.ReadSet)
	actionsWrite  = uint16(fhir.WriteSet)
)

// ActionBit is the bit of a request action (read, vread, search, history,
// create, update, patch, delete, export, operation), 0 for another string.
func ActionBit(action string) uint16 { return uint16(fhir.Interaction(action).Bit()) }

// consentActionBits maps a consentaction code to the request actions it covers:
// access (read, vread, search, history, export), correct (create, update,
// patch, delete), collect (create), use (every read and operation),
// disclose (every read and export, i.e. release of data; operation too).
func consentActionBits(code string) uint16 {
	switch code {
	case "access":
		return actionsAccess
	case "correct":
		return actionsWrite
	case "collect":
		return ActionCreate
	case "use":
		return actionsAccess | ActionOperation
	case "disclose":
		return actionsAccess | ActionOperation
	}
	return 0
}

// fhirTime parses a FHIR date, dateTime or instant. It returns the first
// instant the value denotes and the first instant after it at the value's
// precision (a year, month, day, or the given second). Values without a
// zone are read as UTC.
func fhirTime(s string) (start, next time.Time, ok bool) {
	switch len(s) {
	case 4:
		t, err := time.Parse("2006", s)
		if err != nil {
			return start, next, false
		}
		return t, t.AddDate(1, 0, 0), true
	case 7:
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return start, next, false
		}
		return t, t.AddDate(0, 1, 0), true
	case 10:
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return start, next, false
		}
		return t, t.AddDate(0, 0, 1), true
	}
	if len(s) < 16 || s[10] != 'T' {
		return start, next, false
	}
	for _, layout := range [...]string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() < 1 || t.Year() > 9999 {
				return start, next, false
			}
			prec := time.Second
			if strings.Contains(s, ".") {
				prec = time.Nanosecond
			}
			return t, t.Add(prec), true
		}
	}
	return start, next, false
}
