package consentstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// Errors of [Store.Put] besides [ErrNotFound] and [ErrUnavailable]. Each
// names a refusal: nothing was written.
var (
	// ErrInvalid: the consent cannot be stored as it is (an id that is not
	// a FHIR id, a consent dated in the future). The error is a
	// [*InvalidError] naming the element.
	ErrInvalid = errors.New("invalid consent")
	// ErrOtherPatient: the id is stored for another patient. A consent
	// cannot be moved to another patient by reusing its id: that would
	// silently remove the first patient's consent.
	ErrOtherPatient = errors.New("consent id belongs to another patient")
	// ErrVersionMismatch: [IfVersion] was given and the stored record has
	// another version, or there is none.
	ErrVersionMismatch = errors.New("consent version does not match")
	// ErrLimit: the consent or the patient's consents exceed a [Limits]
	// bound.
	ErrLimit = errors.New("consent limit exceeded")
)

// InvalidError is an [ErrInvalid] naming the element in FHIRPath form
// (e.g. "dateTime").
type InvalidError struct {
	Path string
	Msg  string
}

func (e *InvalidError) Error() string { return e.Path + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Default limits (see [Limits]).
const (
	DefaultMaxBytes      = 256 << 10
	DefaultMaxProvisions = 1000
	DefaultMaxPerPatient = 1000
	DefaultMaxClockSkew  = 5 * time.Minute
)

// Limits bound what a store accepts on Put. A zero field takes its
// default; a negative one turns the check off.
type Limits struct {
	// MaxBytes bounds the consent's JSON (default 256 KiB).
	MaxBytes int
	// MaxProvisions bounds the consent's compiled provisions, the root
	// included ([fhirconsent.Consent.ProvisionCount]; default 1,000).
	MaxProvisions int
	// MaxPerPatient bounds the records one patient has, revoked ones
	// included (they stay readable); replacing a record does not add one
	// (default 1,000).
	MaxPerPatient int
	// MaxClockSkew is how far in the future of the store's clock the date
	// a consent was given (R4 dateTime, R5 date) may be (default 5
	// minutes). That date ranks consents under most-recent, so a consent
	// dated in the future would outrank every consent given until then.
	// Periods (the consent's validity, provision periods) may start in
	// the future: they schedule when a rule applies and rank nothing.
	MaxClockSkew time.Duration
}

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxProvisions == 0 {
		l.MaxProvisions = DefaultMaxProvisions
	}
	if l.MaxPerPatient == 0 {
		l.MaxPerPatient = DefaultMaxPerPatient
	}
	if l.MaxClockSkew == 0 {
		l.MaxClockSkew = DefaultMaxClockSkew
	}
	return l
}

// check is what Put verifies of the consent alone, before any write: its
// id, size, provisions and date. now is the store's clock.
func (l Limits) check(c *fhirconsent.Consent, now time.Time) error {
	if c.ID != "" && !fhirconsent.ValidID(c.ID) {
		return &InvalidError{Path: "id", Msg: fmt.Sprintf("want a FHIR id: 1 to %d letters, digits, '-' or '.'", fhirconsent.MaxIDLength)}
	}
	if l.MaxBytes > 0 && len(c.Raw) > l.MaxBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrLimit, len(c.Raw), l.MaxBytes)
	}
	if l.MaxProvisions > 0 {
		if n := c.ProvisionCount(); n > l.MaxProvisions {
			return fmt.Errorf("%w: %d provisions, at most %d", ErrLimit, n, l.MaxProvisions)
		}
	}
	if l.MaxClockSkew > 0 && !c.DateTime.IsZero() && c.DateTime.After(now.Add(l.MaxClockSkew)) {
		path := "dateTime"
		if c.FHIRVersion == fhirconsent.R5 {
			path = "date"
		}
		return &InvalidError{Path: path, Msg: fmt.Sprintf("in the future (more than %s after the server's clock)", l.MaxClockSkew)}
	}
	return nil
}

// putOptions are the conditions of one Put.
type putOptions struct {
	ifVersion string
}

// PutOption is a condition of [Store.Put].
type PutOption func(*putOptions)

// IfVersion makes Put replace the record only when its version is v
// (optimistic concurrency): when there is no record with the consent's id,
// or it has another version, Put fails with [ErrVersionMismatch] and
// writes nothing. An empty v is no condition.
func IfVersion(v string) PutOption {
	return func(o *putOptions) { o.ifVersion = v }
}

func putOpts(opts []PutOption) putOptions {
	var o putOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}
