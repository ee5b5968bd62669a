package consent

import (
	"strings"
	"time"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Query is what consent matching needs from one request, normalised once.
// Build it with [NewQuery]; it is read-only afterwards and may be shared.
type Query struct {
	time time.Time

	patient    string
	subjectID  string
	subjectOrg string
	idents     []fhirconsent.Identifier // the subject's own, then its organization's
	ownIdents  int                      // how many of idents are the subject's own
	roles      []string
	kind       string
	clientID   string

	action   uint16
	purposes []string // purposeOfUse and its ancestors
	research bool

	resourceType string
	resourceRef  string // "Type/id", "" when there is no id
	author       string
	org          string
	date         time.Time
	conf         int8
	labels       []fhirconsent.Coding // canonical
	codes        []fhirconsent.Coding // codes and categories, canonical
	profiles     []string
	residual     bool
}

// NewQuery precomputes what matching needs from req, to be evaluated at
// the instant at: the decision clock, which the caller chooses (a server
// decides at its own time, not at req.context.time).
func NewQuery(req *chaperonev1.CheckRequest, at time.Time) Query {
	q := Query{time: at}
	s := req.GetSubject()
	q.subjectID = fhirconsent.CanonicalReference(s.GetId())
	q.subjectOrg = fhirconsent.CanonicalReference(s.GetOrganization())
	q.roles = s.GetRoles()
	q.kind = s.GetKind()
	q.clientID = s.GetClientId()
	if n := len(s.GetIdentifiers()) + len(s.GetOrganizationIdentifiers()); n > 0 {
		q.idents = make([]fhirconsent.Identifier, 0, n)
		for _, id := range s.GetIdentifiers() {
			q.idents = append(q.idents, fhirconsent.CanonicalIdentifier(id.GetSystem(), id.GetValue()))
		}
		q.ownIdents = len(q.idents)
		for _, id := range s.GetOrganizationIdentifiers() {
			q.idents = append(q.idents, fhirconsent.CanonicalIdentifier(id.GetSystem(), id.GetValue()))
		}
	}
	q.action = fhirconsent.ActionBit(req.GetAction())
	q.purposes = fhir.PurposeChain(req.GetPurposeOfUse())
	for _, p := range q.purposes {
		if p == "HRESCH" {
			q.research = true
		}
	}

	r := req.GetResource()
	q.patient = patientRef(r.GetPatient())
	q.resourceType = r.GetType()
	if id := r.GetId(); id != "" && q.resourceType != "" {
		q.resourceRef = q.resourceType + "/" + id
	}
	q.author = fhirconsent.CanonicalReference(r.GetAuthor())
	q.org = fhirconsent.CanonicalReference(r.GetOrganization())
	if d := r.GetDate(); d != nil {
		q.date = d.AsTime()
	}
	if n := len(r.GetSecurityLabels()); n > 0 {
		q.labels = make([]fhirconsent.Coding, 0, n)
		for _, l := range r.GetSecurityLabels() {
			c := fhirconsent.CanonicalCoding(fhirconsent.Coding{System: l.GetSystem(), Code: l.GetCode()})
			q.labels = append(q.labels, c)
			if lv := fhirconsent.ConfidentialityLevel(c); lv > q.conf {
				q.conf = lv
			}
		}
	}
	if n := len(r.GetCodes()) + len(r.GetCategories()); n > 0 {
		q.codes = make([]fhirconsent.Coding, 0, n)
		for _, l := range r.GetCodes() {
			q.codes = append(q.codes, fhirconsent.CanonicalCoding(fhirconsent.Coding{System: l.GetSystem(), Code: l.GetCode()}))
		}
		for _, l := range r.GetCategories() {
			q.codes = append(q.codes, fhirconsent.CanonicalCoding(fhirconsent.Coding{System: l.GetSystem(), Code: l.GetCode()}))
		}
	}
	for _, p := range r.GetProfiles() {
		q.profiles = append(q.profiles, strings.TrimRight(p, "/"))
	}
	q.residual = r.GetId() == "" && len(q.labels) == 0
	return q
}

// Time is the instant the query is evaluated for.
func (q *Query) Time() time.Time { return q.time }

// Patient is the canonical patient reference the query is about.
func (q *Query) Patient() string { return q.patient }

// patientRef canonicalises resource.patient; a bare id means "Patient/<id>".
func patientRef(s string) string {
	if s == "" {
		return ""
	}
	s = fhirconsent.CanonicalReference(s)
	if !strings.Contains(s, "/") && !strings.Contains(s, ":") {
		return "Patient/" + s
	}
	return s
}
