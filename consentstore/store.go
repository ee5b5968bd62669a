package consentstore

import (
	"context"
	"errors"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// ErrNotFound is returned for an id the store does not hold.
var ErrNotFound = errors.New("consent not found")

// Record is a stored consent with its record version and revocation state.
type Record struct {
	// Consent is the compiled consent; its ID and Version are the record's.
	Consent *fhirconsent.Consent
	// Version changes on every write of the record.
	Version string
	// Revoked is set once the consent was revoked: it no longer takes part
	// in decisions but stays readable.
	Revoked bool
}

// Set is what decisions read for one patient: the consents that are not
// revoked (whatever their status: evaluation skips inactive ones) and the
// patient's consent version, which changes on every write for the patient.
// Consents is shared and must not be modified.
type Set struct {
	Consents []*fhirconsent.Consent
	Version  string
}

// Store keeps compiled consents by id and by patient. Implementations are
// safe for concurrent use and pass the suite of package storetest.
type Store interface {
	// Put stores c under its resource id, or a generated one when it has
	// none, replacing a record with the same id of the same patient (a
	// revoked one too: the new record is not revoked). It bumps the
	// patient's version. It refuses, writing nothing: an id that is not a
	// FHIR id or a consent dated in the future ([ErrInvalid]), an id stored
	// for another patient ([ErrOtherPatient]), a stale [IfVersion]
	// ([ErrVersionMismatch]), and what exceeds the store's [Limits]
	// ([ErrLimit]).
	Put(ctx context.Context, c *fhirconsent.Consent, opts ...PutOption) (Record, error)
	// Get returns the record with the id, or ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// List returns the patient's records (revoked ones too), ordered by id,
	// and the patient's version.
	List(ctx context.Context, patient string) ([]Record, string, error)
	// Revoke marks the record revoked and bumps its and the patient's
	// version; revoking a revoked record is not an error. ErrNotFound when
	// there is no such record.
	Revoke(ctx context.Context, id string) (Record, error)
	// ForPatient is the hot-path read: the patient's consents that are not
	// revoked, and the patient's version.
	ForPatient(ctx context.Context, patient string) (Set, error)
}
