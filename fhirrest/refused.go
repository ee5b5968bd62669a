package fhirrest

// Reason names why a request was refused, in the upper-case form the
// doors report it (an OperationOutcome code, a decision reason).
type Reason string

// The reasons a request is refused.
const (
	ReasonBadPath            Reason = "BAD_PATH"             // not an origin-form path of printable ASCII
	ReasonOutsideBase        Reason = "OUTSIDE_BASE"         // the path is not under the FHIR base
	ReasonEncodedSlash       Reason = "ENCODED_SLASH"        // %2F in the path
	ReasonEncodedDot         Reason = "ENCODED_DOT"          // %2E in the path
	ReasonDoubleEncoding     Reason = "DOUBLE_ENCODING"      // %25 in the path, query or form body
	ReasonEncodedPath        Reason = "ENCODED_PATH"         // any other percent-encoding in the path
	ReasonDotSegment         Reason = "DOT_SEGMENT"          // a "." or ".." segment
	ReasonEmptySegment       Reason = "EMPTY_SEGMENT"        // "//" or a trailing "/"
	ReasonBadID              Reason = "BAD_ID"               // an id or version outside [A-Za-z0-9\-\.]{1,64}
	ReasonUnknownType        Reason = "UNKNOWN_TYPE"         // not a FHIR R4/R5 resource type (case-sensitive)
	ReasonMethod             Reason = "METHOD_NOT_MAPPED"    // the method has no interaction at this path
	ReasonUnknownInteraction Reason = "UNKNOWN_INTERACTION"  // the path has no FHIR RESTful interaction
	ReasonConditional        Reason = "CONDITIONAL"          // conditional create, update, patch or delete
	ReasonReverseChain       Reason = "REVERSE_CHAIN"        // _has
	ReasonChained            Reason = "CHAINED_PARAMETER"    // subject.name=, subject:Patient.name=
	ReasonInclude            Reason = "UNSAFE_INCLUDE"       // _include/_revinclude wildcard, :iterate or malformed
	ReasonGraphQL            Reason = "GRAPHQL"              // $graphql
	ReasonParameter          Reason = "PARAMETER_NOT_MAPPED" // a parameter the interaction cannot carry safely
	ReasonBadQuery           Reason = "BAD_QUERY"            // malformed query or form encoding
	ReasonPatientParameter   Reason = "BAD_PATIENT_PARAMETER"
	ReasonPatientConflict    Reason = "PATIENT_CONFLICT"  // a patient parameter names another patient than the path
	ReasonMultiplePatients   Reason = "MULTIPLE_PATIENTS" // more than one patient value
	ReasonNotInCompartment   Reason = "NOT_IN_COMPARTMENT"
	ReasonBodyRequired       Reason = "BODY_REQUIRED" // POST _search or batch/transaction without its body
	ReasonBatch              Reason = "BATCH"         // a batch or transaction given to Map, not MapAll
	ReasonBadBundle          Reason = "BAD_BUNDLE"    // a batch/transaction body that is not a well-formed Bundle
)

// RefusedError is the error of a request the mapper cannot map safely. The
// text names the reason and the part of the request (a segment position, a
// parameter name), never a parameter value or an id, so it carries no PHI.
//
// errors.Is(err, ErrEncodedSlash) matches on the reason alone.
type RefusedError struct {
	Reason Reason
	Detail string
}

func (e *RefusedError) Error() string {
	if e.Detail == "" {
		return "fhir request refused: " + string(e.Reason)
	}
	return "fhir request refused: " + string(e.Reason) + ": " + e.Detail
}

// Is makes every refusal with the same reason match the sentinel of that
// reason.
func (e *RefusedError) Is(target error) bool {
	t, ok := target.(*RefusedError)
	return ok && t.Reason == e.Reason
}

// EntryError is the error of a batch or transaction refused because of one
// of its entries ([Mapper.MapAll]): Index is the entry's index in
// Bundle.entry, Err why it was refused. errors.As and errors.Is see Err.
type EntryError struct {
	Index int
	Err   *RefusedError
}

func (e *EntryError) Error() string { return e.Err.Error() }

func (e *EntryError) Unwrap() error { return e.Err }

// Sentinels, one per reason, for errors.Is.
var (
	ErrBadPath            = &RefusedError{Reason: ReasonBadPath}
	ErrOutsideBase        = &RefusedError{Reason: ReasonOutsideBase}
	ErrEncodedSlash       = &RefusedError{Reason: ReasonEncodedSlash}
	ErrEncodedDot         = &RefusedError{Reason: ReasonEncodedDot}
	ErrDoubleEncoding     = &RefusedError{Reason: ReasonDoubleEncoding}
	ErrEncodedPath        = &RefusedError{Reason: ReasonEncodedPath}
	ErrDotSegment         = &RefusedError{Reason: ReasonDotSegment}
	ErrEmptySegment       = &RefusedError{Reason: ReasonEmptySegment}
	ErrBadID              = &RefusedError{Reason: ReasonBadID}
	ErrUnknownType        = &RefusedError{Reason: ReasonUnknownType}
	ErrMethod             = &RefusedError{Reason: ReasonMethod}
	ErrUnknownInteraction = &RefusedError{Reason: ReasonUnknownInteraction}
	ErrConditional        = &RefusedError{Reason: ReasonConditional}
	ErrReverseChain       = &RefusedError{Reason: ReasonReverseChain}
	ErrChained            = &RefusedError{Reason: ReasonChained}
	ErrInclude            = &RefusedError{Reason: ReasonInclude}
	ErrGraphQL            = &RefusedError{Reason: ReasonGraphQL}
	ErrParameter          = &RefusedError{Reason: ReasonParameter}
	ErrBadQuery           = &RefusedError{Reason: ReasonBadQuery}
	ErrPatientParameter   = &RefusedError{Reason: ReasonPatientParameter}
	ErrPatientConflict    = &RefusedError{Reason: ReasonPatientConflict}
	ErrMultiplePatients   = &RefusedError{Reason: ReasonMultiplePatients}
	ErrNotInCompartment   = &RefusedError{Reason: ReasonNotInCompartment}
	ErrBodyRequired       = &RefusedError{Reason: ReasonBodyRequired}
	ErrBatch              = &RefusedError{Reason: ReasonBatch}
	ErrBadBundle          = &RefusedError{Reason: ReasonBadBundle}
)

func refuse(r Reason, detail string) error { return &RefusedError{Reason: r, Detail: detail} }
