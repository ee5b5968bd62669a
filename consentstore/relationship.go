package consentstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Treating relationships say who treats whom: a practitioner on a
// patient's CareTeam, or a participant of one of the patient's Encounters,
// for a period. They are stored beside the consents, in the memory
// ([MemoryRelationships]) and the Redis ([Redis]) store, and the engine
// asks [Relationships.ActiveRelationship] for the fact
// context.treatingRelationship.

// Relationship kinds.
const (
	RelationshipCareTeam  = "careteam"
	RelationshipEncounter = "encounter"
)

// ErrRelationshipNotFound is returned for a relationship id the store does
// not hold.
var ErrRelationshipNotFound = errors.New("relationship not found")

// Relationship is one treating relationship.
type Relationship struct {
	// ID identifies the relationship; [Relationship.Normalize] derives one
	// from the kind, source, patient and practitioner when it is empty, so
	// importing the same resource again replaces what it imported before.
	ID string `json:"id"`
	// Kind is RelationshipCareTeam or RelationshipEncounter.
	Kind string `json:"kind"`
	// Patient is "Patient/<id>".
	Patient string `json:"patient"`
	// Practitioner is "Practitioner/<id>" (or "PractitionerRole/<id>"),
	// compared with the request's subject.id.
	Practitioner string `json:"practitioner"`
	// Organization is "Organization/<id>", or "".
	Organization string `json:"organization,omitempty"`
	// Start and End bound the period; a zero one is open. End is
	// exclusive: the first instant the relationship no longer holds.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Source is the FHIR resource it comes from ("CareTeam/ct1"), or "".
	Source string `json:"source,omitempty"`
	// UpdatedAt is when the store wrote it.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// ActiveAt reports whether the relationship holds at t: at or after its
// start and before its end.
func (r Relationship) ActiveAt(t time.Time) bool {
	return (r.Start.IsZero() || !t.Before(r.Start)) && (r.End.IsZero() || t.Before(r.End))
}

var (
	relIDPattern      = regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)
	relPatientPattern = regexp.MustCompile(`^Patient/[A-Za-z0-9.-]{1,64}$`)
	relPractPattern   = regexp.MustCompile(`^(Practitioner|PractitionerRole)/[A-Za-z0-9.-]{1,64}$`)
	relOrgPattern     = regexp.MustCompile(`^Organization/[A-Za-z0-9.-]{1,64}$`)
	relSourcePattern  = regexp.MustCompile(`^(CareTeam|Encounter)/[A-Za-z0-9.-]{1,64}$`)
)

// Validate checks the relationship; the error wraps [ErrInvalid] and names
// the field.
func (r Relationship) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: relationship.%s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
	switch {
	case r.ID != "" && !relIDPattern.MatchString(r.ID):
		return bad("id", "%q is not 1-64 letters, digits, '.' or '-'", r.ID)
	case r.Kind != RelationshipCareTeam && r.Kind != RelationshipEncounter:
		return bad("kind", "%q: want careteam or encounter", r.Kind)
	case !relPatientPattern.MatchString(r.Patient):
		return bad("patient", "%q is not Patient/<id>", r.Patient)
	case !relPractPattern.MatchString(r.Practitioner):
		return bad("practitioner", "%q is not Practitioner/<id> or PractitionerRole/<id>", r.Practitioner)
	case r.Organization != "" && !relOrgPattern.MatchString(r.Organization):
		return bad("organization", "%q is not Organization/<id>", r.Organization)
	case r.Source != "" && !relSourcePattern.MatchString(r.Source):
		return bad("source", "%q is not CareTeam/<id> or Encounter/<id>", r.Source)
	case !r.Start.IsZero() && !r.End.IsZero() && !r.Start.Before(r.End):
		return bad("end", "not after start")
	}
	return nil
}

// Normalize validates r and gives it its derived id when it has none.
func (r Relationship) Normalize() (Relationship, error) {
	if err := r.Validate(); err != nil {
		return r, err
	}
	if r.ID == "" {
		r.ID = RelationshipID(r.Kind, r.Source, r.Patient, r.Practitioner)
	}
	if !r.Start.IsZero() {
		r.Start = r.Start.UTC()
	}
	if !r.End.IsZero() {
		r.End = r.End.UTC()
	}
	return r, nil
}

// RelationshipID is the id derived from a relationship's kind, source,
// patient and practitioner: "rel-" and 40 hex digits of their SHA-256.
func RelationshipID(kind, source, patient, practitioner string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + source + "\x00" + patient + "\x00" + practitioner))
	return "rel-" + hex.EncodeToString(h[:20])
}

// Relationships is a store of treating relationships.
type Relationships interface {
	// PutRelationship stores r (normalized, see [Relationship.Normalize]),
	// replacing the relationship with the same id, and returns what it
	// stored. An invalid r is [ErrInvalid].
	PutRelationship(ctx context.Context, r Relationship) (Relationship, error)
	// DeleteRelationship removes the relationship with the id and returns
	// it, or [ErrRelationshipNotFound].
	DeleteRelationship(ctx context.Context, id string) (Relationship, error)
	// PatientRelationships lists a patient's relationships, ended ones
	// too, ordered by id.
	PatientRelationships(ctx context.Context, patient string) ([]Relationship, error)
	// PractitionerRelationships lists a practitioner's relationships,
	// ended ones too, ordered by id.
	PractitionerRelationships(ctx context.Context, practitioner string) ([]Relationship, error)
	// ActiveRelationship reports whether the practitioner has a
	// relationship with the patient that holds at at. An error means the
	// store could not answer.
	ActiveRelationship(ctx context.Context, practitioner, patient string, at time.Time) (bool, error)
}
