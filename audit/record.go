package audit

import (
	"time"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Kind says what a [Record] is.
type Kind string

// Record kinds.
const (
	KindDecision   Kind = "decision"   // one decision of Check or a BatchCheck item
	KindReview     Kind = "review"     // a privacy officer's review of a decision
	KindCheckpoint Kind = "checkpoint" // a signed head of the chain
	KindDrop       Kind = "drop"       // decisions that were answered but not recorded (fail-open)
	KindChange     Kind = "change"     // an administrative change of who may see what (see [Change])
	KindGenesis    Kind = "genesis"    // the first record of a signed log: who writes it, with which key, at which cadence
	KindRestart    Kind = "restart"    // a writer took up an existing signed log (a server restart), signing its head
	KindPrune      Kind = "prune"      // old segments of the log were removed or archived (see [Prune])
)

// Record is one entry of the audit chain. Seq, Prev and Hash are set when
// the record is chained; the other fields depend on Kind.
type Record struct {
	Seq  uint64    `json:"seq"`
	Prev string    `json:"prev"`
	Kind Kind      `json:"kind"`
	Time time.Time `json:"time"`
	// Caller is who sent the request, as the server authenticated it (the
	// mutual TLS identity or token subject, [CallerAnonymousLoopback] when
	// no authentication is configured): on decisions, reviews and changes.
	Caller string `json:"caller,omitempty"`

	// Decision records.
	DecisionID     string       `json:"decisionId,omitempty"`
	Subject        *Subject     `json:"subject,omitempty"`
	Action         string       `json:"action,omitempty"`
	Resource       *Resource    `json:"resource,omitempty"`
	PurposeOfUse   string       `json:"purposeOfUse,omitempty"`
	Context        *Context     `json:"context,omitempty"`
	Decision       string       `json:"decision,omitempty"` // ALLOW or DENY
	Reasons        []Reason     `json:"reasons,omitempty"`
	Obligations    *Obligations `json:"obligations,omitempty"`
	BundleRevision string       `json:"bundleRevision,omitempty"`
	Consents       []ConsentRef `json:"consents,omitempty"`
	Review         *Review      `json:"review,omitempty"`
	Checkpoint     *Checkpoint  `json:"checkpoint,omitempty"`
	Drop           *Drop        `json:"drop,omitempty"`
	Change         *Change      `json:"change,omitempty"`
	Opening        *Opening     `json:"opening,omitempty"`
	Prune          *Prune       `json:"prune,omitempty"`
	// Index is the blind index of the patient and subject, on records
	// whose identifying fields are sealed ([WithFieldKeys]).
	Index *Index `json:"index,omitempty"`
}

// Subject is who asked.
type Subject struct {
	ID           string   `json:"id"`
	Kind         string   `json:"kind,omitempty"`
	Roles        []string `json:"roles,omitempty"`
	Organization string   `json:"organization,omitempty"`
	ClientID     string   `json:"clientId,omitempty"`
	// Identifiers, OrganizationIdentifiers, Scopes and LaunchPatient are
	// the rest of what a decision may depend on (consent actors, SMART
	// scopes), kept so a recorded decision can be replayed.
	Identifiers             []Identifier `json:"identifiers,omitempty"`
	OrganizationIdentifiers []Identifier `json:"organizationIdentifiers,omitempty"`
	Scopes                  []string     `json:"scopes,omitempty"`
	LaunchPatient           string       `json:"launchPatient,omitempty"`
}

// Identifier is a value in a namespace (a FHIR Identifier).
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Resource identifies what was acted on.
type Resource struct {
	Type         string   `json:"type"`
	ID           string   `json:"id,omitempty"`
	Patient      string   `json:"patient,omitempty"`
	Organization string   `json:"organization,omitempty"`
	Labels       []Coding `json:"labels,omitempty"`
	// Author, Codes, Categories, Date and Profiles are the coded
	// attributes the caller stated (never the resource's content), kept
	// because consents and policies decide on them.
	Author     string     `json:"author,omitempty"`
	Codes      []Coding   `json:"codes,omitempty"`
	Categories []Coding   `json:"categories,omitempty"`
	Date       *time.Time `json:"date,omitempty"`
	Profiles   []string   `json:"profiles,omitempty"`
}

// Coding is a code in a system.
type Coding struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code"`
}

// Context is the circumstance of the request.
type Context struct {
	RequestTime      *time.Time `json:"requestTime,omitempty"`
	IP               string     `json:"ip,omitempty"`
	NetworkZone      string     `json:"networkZone,omitempty"`
	CorrelationID    string     `json:"correlationId,omitempty"`
	BreakGlassReason string     `json:"breakGlassReason,omitempty"`
	DeviceTrust      string     `json:"deviceTrust,omitempty"`
	Phase            string     `json:"phase,omitempty"`
}

// Reason is a reason code and the policy that gave it.
type Reason struct {
	Code     string `json:"code"`
	PolicyID string `json:"policyId,omitempty"`
}

// Obligations are what the caller was told to enforce.
type Obligations struct {
	MaskPaths    []string `json:"maskPaths,omitempty"`
	RedactLabels []Coding `json:"redactLabels,omitempty"`
	AuditTags    []string `json:"auditTags,omitempty"`
}

// ConsentRef names a consent record a decision used.
type ConsentRef struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
}

// Review is a privacy officer's review of a decision (usually break-glass).
type Review struct {
	DecisionID string `json:"decisionId"`
	By         string `json:"by"`
	Note       string `json:"note"`
}

// Checkpoint signs the head of the chain: Count records, the last of which
// hashes to Head, existed at Time. Sig is the Ed25519 signature of
// [Checkpoint.Message] by the key whose id is KeyID.
type Checkpoint struct {
	Count uint64    `json:"count"`
	Head  string    `json:"head"`
	Time  time.Time `json:"time"`
	KeyID string    `json:"keyId"`
	Sig   []byte    `json:"sig"`
	// Closed marks the clean-shutdown checkpoint, the last record a
	// writer leaves when it closes; it is signed.
	Closed bool `json:"closed,omitempty"`
}

// Opening is the signed body of a genesis or restart record: the writer
// that opened the log (Instance), the key that signs its checkpoints and
// the cadence it keeps, bound to the head of the chain before it (Count
// records hashing to Head; 0 and [Genesis] for a genesis). Sig is the
// Ed25519 signature of all of it with the record's kind and time.
type Opening struct {
	Instance string `json:"instance"`
	KeyID    string `json:"keyId"`
	// PublicKey is the raw Ed25519 public key; verification still needs
	// it from the operator (--pub), this only names it.
	PublicKey []byte `json:"publicKey"`
	// CheckpointEvery and CheckpointIntervalMs are the cadence: no more
	// than CheckpointEvery records between two signed records, and a
	// record more than CheckpointIntervalMs after the last signed record
	// (by record times) follows a checkpoint unless it is the first since.
	CheckpointEvery      int    `json:"checkpointEvery"`
	CheckpointIntervalMs int64  `json:"checkpointIntervalMs"`
	Count                uint64 `json:"count"`
	Head                 string `json:"head"`
	Sig                  []byte `json:"sig"`
}

// Drop notes decisions answered without a record (fail-open mode).
type Drop struct {
	Count uint64    `json:"count"`
	Since time.Time `json:"since"`
}

// BreakGlassTag is the audit tag policies put on break-glass access.
const BreakGlassTag = "BREAK_GLASS"

// IsBreakGlass reports whether a decision record is an emergency access: a
// break-glass reason was given, a policy tagged it BREAK_GLASS, or the
// purpose was ETREAT.
func (r *Record) IsBreakGlass() bool {
	if r.Kind != KindDecision {
		return false
	}
	if r.Context != nil && r.Context.BreakGlassReason != "" {
		return true
	}
	if r.PurposeOfUse == "ETREAT" {
		return true
	}
	if r.Obligations != nil {
		for _, t := range r.Obligations.AuditTags {
			if t == BreakGlassTag {
				return true
			}
		}
	}
	return false
}

// newDecision copies the identifiers of a decision into a record. Strings are
// immutable and slices are copied, so the record shares nothing with req and
// resp. The writer calls it; until then the log retains the messages (see
// [Log.Record]).
func newDecision(now time.Time, caller string, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) Record {
	r := Record{
		Kind:           KindDecision,
		Time:           now,
		Caller:         caller,
		DecisionID:     resp.GetDecisionId(),
		Action:         req.GetAction(),
		PurposeOfUse:   req.GetPurposeOfUse(),
		Decision:       decisionName(resp.GetDecision()),
		BundleRevision: resp.GetBundleRevision(),
	}
	if s := req.GetSubject(); s != nil {
		r.Subject = &Subject{
			ID:           s.GetId(),
			Kind:         s.GetKind(),
			Roles:        append([]string(nil), s.GetRoles()...),
			Organization: s.GetOrganization(),
			ClientID:     s.GetClientId(),

			Identifiers:             identifiers(s.GetIdentifiers()),
			OrganizationIdentifiers: identifiers(s.GetOrganizationIdentifiers()),
			Scopes:                  append([]string(nil), s.GetScopes()...),
			LaunchPatient:           s.GetLaunchPatient(),
		}
	}
	if res := req.GetResource(); res != nil {
		r.Resource = &Resource{
			Type:         res.GetType(),
			ID:           res.GetId(),
			Patient:      res.GetPatient(),
			Organization: res.GetOrganization(),
			Labels:       codings(res.GetSecurityLabels()),
			Author:       res.GetAuthor(),
			Codes:        codings(res.GetCodes()),
			Categories:   codings(res.GetCategories()),
			Profiles:     append([]string(nil), res.GetProfiles()...),
		}
		if res.GetDate() != nil {
			d := res.GetDate().AsTime()
			r.Resource.Date = &d
		}
	}
	if c := req.GetContext(); c != nil {
		ctx := &Context{
			IP:               c.GetIp(),
			NetworkZone:      c.GetNetworkZone(),
			CorrelationID:    c.GetCorrelationId(),
			BreakGlassReason: c.GetBreakGlassReason(),
			DeviceTrust:      c.GetDeviceTrust(),
			Phase:            c.GetPhase(),
		}
		if c.GetTime() != nil {
			t := c.GetTime().AsTime()
			ctx.RequestTime = &t
		}
		r.Context = ctx
	}
	if rs := resp.GetReasons(); len(rs) > 0 {
		r.Reasons = make([]Reason, len(rs))
		for i, x := range rs {
			r.Reasons[i] = Reason{Code: x.GetCode(), PolicyID: x.GetPolicyId()}
		}
	}
	if o := resp.GetObligations(); o != nil && (len(o.GetMaskPaths())+len(o.GetRedactLabels())+len(o.GetAuditTags())) > 0 {
		r.Obligations = &Obligations{
			MaskPaths:    append([]string(nil), o.GetMaskPaths()...),
			RedactLabels: codings(o.GetRedactLabels()),
			AuditTags:    append([]string(nil), o.GetAuditTags()...),
		}
	}
	if cs := resp.GetConsents(); len(cs) > 0 {
		r.Consents = make([]ConsentRef, len(cs))
		for i, c := range cs {
			r.Consents[i] = ConsentRef{ID: c.GetId(), Version: c.GetVersion()}
		}
	}
	return r
}

func codings(cs []*chaperonev1.Coding) []Coding {
	if len(cs) == 0 {
		return nil
	}
	out := make([]Coding, len(cs))
	for i, c := range cs {
		out[i] = Coding{System: c.GetSystem(), Code: c.GetCode()}
	}
	return out
}

func identifiers(ids []*chaperonev1.Identifier) []Identifier {
	if len(ids) == 0 {
		return nil
	}
	out := make([]Identifier, len(ids))
	for i, x := range ids {
		out[i] = Identifier{System: x.GetSystem(), Value: x.GetValue()}
	}
	return out
}

func decisionName(d chaperonev1.Decision) string {
	switch d {
	case chaperonev1.Decision_DECISION_ALLOW:
		return "ALLOW"
	case chaperonev1.Decision_DECISION_DENY:
		return "DENY"
	default:
		return "UNSPECIFIED"
	}
}
