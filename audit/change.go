package audit

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Callers named in records when no identity was authenticated.
const (
	// CallerAnonymousLoopback is the caller of every request when the
	// server runs without caller authentication (the default, which serves
	// loopback only).
	CallerAnonymousLoopback = "anonymous-loopback"
	// CallerUnauthenticated is the caller of a request that reached the
	// recorder without passing the server's guard (an embedding program
	// that installs none).
	CallerUnauthenticated = "unauthenticated"
	// CallerBundleLoader is the caller of bundle activations: the server's
	// own loader, acting on what the bundle source holds; the bundle's
	// signers are recorded with it.
	CallerBundleLoader = "bundle-loader"
)

// ChangeAction names an administrative change.
type ChangeAction string

// Change actions.
const (
	ChangeConsentPut      ChangeAction = "consent.put"
	ChangeConsentRevoke   ChangeAction = "consent.revoke"
	ChangeGrant           ChangeAction = "break-glass.grant"
	ChangeGrantRevoke     ChangeAction = "break-glass.revoke"
	ChangeAgreementPut    ChangeAction = "agreement.put"
	ChangeAgreementRevoke ChangeAction = "agreement.revoke"
	ChangeBundleActivate  ChangeAction = "bundle.activate"
	ChangeTokenRevoke     ChangeAction = "token.revoke"
	// Treating relationships (RelationshipService).
	ChangeRelationshipPut    ChangeAction = "relationship.put"
	ChangeRelationshipDelete ChangeAction = "relationship.delete"
	// ChangeReview is not a Change record: [Changes] reports review
	// records under this action.
	ChangeReview ChangeAction = "break-glass.review"
)

// Outcomes of a change.
const (
	OutcomeApplied = "applied"
	OutcomeFailed  = "failed"
)

// Change is an administrative change of who may see what: a consent put or
// revoked, a break-glass grant given or revoked, a vendor agreement put or
// revoked, a bearer token revoked, a policy bundle activated. The caller who made it is the
// record's Caller.
//
// A change is recorded before it is applied and only once its record is
// stored ([Log.Change]); when that fails the change is refused, so no
// change is ever in effect without its record. A second record with the
// same ID and an Outcome follows once the change was tried: "applied"
// (with what the store assigned, such as the consent's new version) or
// "failed" (with a short error code). A change record without an outcome
// record means the server stopped, or could not record the outcome, in
// between: whether the change took effect must be read from the store.
//
// Only the fields of the action are set; all carry identifiers, except
// the reason of a break-glass grant, which is the requester's own words.
type Change struct {
	ID     string       `json:"id"`
	Action ChangeAction `json:"action"`
	// Outcome is empty on the record written before the change, and
	// "applied" or "failed" on the record written after it.
	Outcome string `json:"outcome,omitempty"`
	// Error is why the change failed: a Connect code such as "not_found".
	Error string `json:"error,omitempty"`
	// CorrelationID is the request's correlation id (X-Request-Id), to
	// find the server's log lines of the change.
	CorrelationID string `json:"correlationId,omitempty"`

	// Patient is whose access the change is about (consents, grants).
	Patient string `json:"patient,omitempty"`
	// Subject is the grantee of a break-glass grant.
	Subject string `json:"subject,omitempty"`

	// Consents: the consent's id, the store's version after the change
	// (on the outcome), its FHIR status and FHIR version (R4, R5).
	ConsentID   string `json:"consentId,omitempty"`
	Version     string `json:"version,omitempty"`
	Status      string `json:"status,omitempty"`
	FHIRVersion string `json:"fhirVersion,omitempty"`

	// Break-glass grants: the grant's id, the reason and when it expires.
	GrantID string     `json:"grantId,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`

	// Token revocations: the token's jti or SHA-256, and until when it
	// is refused (in Expires).
	JTI         string `json:"jti,omitempty"`
	TokenSHA256 string `json:"tokenSha256,omitempty"`

	// Vendor agreements.
	ClientID      string     `json:"clientId,omitempty"`
	Vendor        string     `json:"vendor,omitempty"`
	Tier          string     `json:"tier,omitempty"`
	BAASigned     bool       `json:"baaSigned,omitempty"`
	BAAExpires    *time.Time `json:"baaExpires,omitempty"`
	Purposes      []string   `json:"purposes,omitempty"`
	ResourceTypes []string   `json:"resourceTypes,omitempty"`

	// Treating relationships: the relationship's id, kind, organization
	// and period; Patient and Subject (the practitioner) above, its FHIR
	// source resource in Source.
	RelationshipID   string     `json:"relationshipId,omitempty"`
	RelationshipKind string     `json:"relationshipKind,omitempty"`
	Organization     string     `json:"organization,omitempty"`
	Start            *time.Time `json:"start,omitempty"`
	End              *time.Time `json:"end,omitempty"`

	// Bundle activations: revision, name, digest and signers (key ids) of
	// the bundle, where it came from, the revision it replaced, and
	// whether it is a deliberate downgrade (not newer than the one it
	// replaced).
	Revision         string   `json:"revision,omitempty"`
	BundleName       string   `json:"bundleName,omitempty"`
	Digest           string   `json:"digest,omitempty"`
	Signers          []string `json:"signers,omitempty"`
	Source           string   `json:"source,omitempty"`
	PreviousRevision string   `json:"previousRevision,omitempty"`
	Downgrade        bool     `json:"downgrade,omitempty"`
}

// NewChangeID returns a random id linking a change's records.
func NewChangeID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// ChangeEntry is one administrative change as [Changes] reports it: the
// change record merged with its outcome record.
type ChangeEntry struct {
	Time   time.Time `json:"time"`
	Caller string    `json:"caller"`
	Change
	// Outcome is "applied", "failed", or "unknown" when no outcome was
	// recorded; for a review, "recorded".
	Outcome string `json:"outcome"`
	// Reviews: the decision reviewed, by whom (as written by the
	// reviewer) and the note.
	DecisionID string `json:"decisionId,omitempty"`
	ReviewedBy string `json:"reviewedBy,omitempty"`
	Note       string `json:"note,omitempty"`
}

// Changes is the administrative history in the window, oldest first: every
// change (with its outcome merged in) and every review of a decision. With
// patient set, only the changes about that patient: consents and grants of
// the patient and reviews of decisions about the patient.
func Changes(recs []Record, patient string, w Window) []ChangeEntry {
	var out []ChangeEntry
	byID := map[string]int{} // change id → index in out
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Kind == KindChange && r.Change != nil && r.Change.Outcome == "":
			e := ChangeEntry{Time: r.Time, Caller: r.Caller, Change: *r.Change, Outcome: "unknown"}
			byID[r.Change.ID] = len(out)
			out = append(out, e)
		case r.Kind == KindChange && r.Change != nil:
			if j, ok := byID[r.Change.ID]; ok {
				mergeOutcome(&out[j], r.Change)
				continue
			}
			// An outcome without its change: a change refused because its
			// record was not stored in time, whose record was then lost.
			e := ChangeEntry{Time: r.Time, Caller: r.Caller, Change: *r.Change, Outcome: r.Change.Outcome}
			e.Change.Outcome = ""
			out = append(out, e)
		case r.Kind == KindReview && r.Review != nil:
			e := ChangeEntry{Time: r.Time, Caller: r.Caller, Change: Change{Action: ChangeReview}, Outcome: "recorded",
				DecisionID: r.Review.DecisionID, ReviewedBy: r.Review.By, Note: r.Review.Note}
			if d, ok := FindDecision(recs, r.Review.DecisionID); ok {
				if d.Resource != nil {
					e.Patient = d.Resource.Patient
				}
				if d.Subject != nil {
					e.Subject = d.Subject.ID
				}
			}
			out = append(out, e)
		}
	}
	kept := out[:0]
	for _, e := range out {
		if w.Contains(e.Time) && (patient == "" || e.Patient == patient) {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}

// mergeOutcome takes the outcome and what the store assigned.
func mergeOutcome(e *ChangeEntry, o *Change) {
	e.Outcome, e.Error = o.Outcome, o.Error
	e.Change.Outcome = ""
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&e.Version, o.Version)
	set(&e.Patient, o.Patient)
	set(&e.Subject, o.Subject)
	set(&e.Status, o.Status)
	set(&e.GrantID, o.GrantID)
	set(&e.ConsentID, o.ConsentID)
	if o.Expires != nil {
		e.Expires = o.Expires
	}
}
