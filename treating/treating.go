// Package treating reads treating relationships (who treats whom) from FHIR
// R4 and R5 CareTeam and Encounter resources, for
// `chaperone relationships import`.
//
// A [Reader] takes resources, Bundles of them and NDJSON ([Reader.Add]);
// PractitionerRole resources among them resolve a participant given as a
// PractitionerRole to its practitioner. [Reader.Sources] then returns, per
// CareTeam or Encounter, the relationships it establishes:
//
//   - CareTeam: one per participant.member that is a Practitioner (or a
//     PractitionerRole), for the patient in subject, over the CareTeam's
//     period intersected with the participant's, in managingOrganization
//     (or the role's organization). Only an active CareTeam (or one without
//     a status) establishes any; proposed, suspended, inactive and
//     entered-in-error ones establish none, so importing them removes what
//     an earlier import of the same resource stored.
//   - Encounter: one per participant.individual (R4) or participant.actor
//     (R5) that is a Practitioner (or a PractitionerRole), for the patient
//     in subject, over the Encounter's period intersected with the
//     participant's, in serviceProvider. Only arrived, triaged,
//     in-progress, onleave and finished Encounters (R5: in-progress,
//     on-hold, discharged, completed) establish any; planned, cancelled,
//     entered-in-error and unknown ones none. A finished (discharged,
//     completed) Encounter whose period has no end establishes none: it is
//     over, and an open end would make it last forever.
//
// Periods end exclusively at the precision of the FHIR value (an end
// "2026-01-31" includes that whole day). A period that ends before it
// starts, a subject that is not a Patient, or a malformed resource is an
// error naming the resource: nothing of it is guessed.
package treating

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// Source is one CareTeam or Encounter and the relationships it establishes
// (none for an inactive one).
type Source struct {
	// Ref is "CareTeam/<id>" or "Encounter/<id>".
	Ref string
	// Patient is the subject, "Patient/<id>".
	Patient string
	// Relationships have derived ids ([consentstore.RelationshipID] of
	// the kind, Ref with the participant's index, patient and practitioner).
	Relationships []consentstore.Relationship
}

// Reader collects resources; it is not safe for concurrent use.
type Reader struct {
	roles   map[string]role // PractitionerRole/<id> → its practitioner and organization
	pending []resource
}

type role struct{ practitioner, organization string }

type resource struct {
	name string // where it was read, for errors
	m    map[string]any
}

// NewReader returns an empty reader.
func NewReader() *Reader { return &Reader{roles: map[string]role{}} }

// Add reads data (a resource, a Bundle or NDJSON) named name.
// Resources other than CareTeam, Encounter and PractitionerRole are
// ignored.
func (r *Reader) Add(name string, data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return fmt.Errorf("%s: empty", name)
	}
	var one map[string]any
	if err := json.Unmarshal(data, &one); err == nil {
		return r.addResource(name, one)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		l := bytes.TrimSpace(sc.Bytes())
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			return fmt.Errorf("%s:%d: not a JSON object: %v", name, line, err)
		}
		if err := r.addResource(fmt.Sprintf("%s:%d", name, line), m); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (r *Reader) addResource(name string, m map[string]any) error {
	switch str(m, "resourceType") {
	case "Bundle":
		entries, _ := m["entry"].([]any)
		for i, e := range entries {
			em, _ := e.(map[string]any)
			res, ok := em["resource"].(map[string]any)
			if !ok {
				continue
			}
			if err := r.addResource(fmt.Sprintf("%s entry[%d]", name, i), res); err != nil {
				return err
			}
		}
	case "PractitionerRole":
		id := str(m, "id")
		if id == "" {
			return nil
		}
		pr := fhirconsent.CanonicalReference(refOf(m["practitioner"]))
		if !strings.HasPrefix(pr, "Practitioner/") {
			return nil
		}
		r.roles["PractitionerRole/"+id] = role{practitioner: pr, organization: fhirconsent.CanonicalReference(refOf(m["organization"]))}
	case "CareTeam", "Encounter":
		r.pending = append(r.pending, resource{name: name, m: m})
	case "":
		return fmt.Errorf("%s: no resourceType", name)
	}
	return nil
}

// Sources returns what every CareTeam and Encounter read establishes, in
// the order read.
func (r *Reader) Sources() ([]Source, error) {
	out := make([]Source, 0, len(r.pending))
	for _, p := range r.pending {
		s, err := r.source(p.m)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p.name, str(p.m, "resourceType")+"/"+str(p.m, "id"), err)
		}
		out = append(out, s)
	}
	return out, nil
}

var (
	careTeamActive  = []string{"", "active"}
	encounterActive = []string{"arrived", "triaged", "in-progress", "onleave", "finished", "on-hold", "discharged", "completed"}
	// encounterEnded: statuses of an encounter that is over; without a
	// period end nobody knows when, so it establishes nothing.
	encounterEnded = []string{"finished", "discharged", "completed"}
)

func (r *Reader) source(m map[string]any) (Source, error) {
	typ, id := str(m, "resourceType"), str(m, "id")
	if id == "" {
		return Source{}, errors.New("id: required (relationships are named after their resource)")
	}
	s := Source{Ref: typ + "/" + id}
	subject := fhirconsent.CanonicalReference(refOf(m["subject"]))
	if !strings.HasPrefix(subject, "Patient/") || len(subject) == len("Patient/") {
		return Source{}, fmt.Errorf("subject: %q is not a Patient reference", refOf(m["subject"]))
	}
	s.Patient = subject
	period, err := periodOf(m["period"])
	if err != nil {
		return Source{}, fmt.Errorf("period.%w", err)
	}
	kind, org, active := consentstore.RelationshipEncounter, "", false
	parts, _ := m["participant"].([]any)
	if typ == "CareTeam" {
		kind = consentstore.RelationshipCareTeam
		active = slices.Contains(careTeamActive, str(m, "status"))
		if orgs, _ := m["managingOrganization"].([]any); len(orgs) > 0 {
			org = fhirconsent.CanonicalReference(refOf(orgs[0]))
		}
	} else {
		active = slices.Contains(encounterActive, str(m, "status"))
		org = fhirconsent.CanonicalReference(refOf(m["serviceProvider"]))
	}
	if !active {
		return s, nil
	}
	for i, p := range parts {
		pm, _ := p.(map[string]any)
		var ref string
		switch {
		case typ == "CareTeam":
			ref = refOf(pm["member"])
		case pm["individual"] != nil:
			ref = refOf(pm["individual"])
		default:
			ref = refOf(pm["actor"])
		}
		ref = fhirconsent.CanonicalReference(ref)
		pOrg := org
		if strings.HasPrefix(ref, "PractitionerRole/") {
			if ro, ok := r.roles[ref]; ok {
				ref = ro.practitioner
				if pOrg == "" {
					pOrg = ro.organization
				}
			}
		}
		if !strings.HasPrefix(ref, "Practitioner/") && !strings.HasPrefix(ref, "PractitionerRole/") {
			continue // a patient, related person, organization or care team
		}
		pp, err := periodOf(pm["period"])
		if err != nil {
			return Source{}, fmt.Errorf("participant[%d].period.%w", i, err)
		}
		span := intersect(period, pp)
		if !span.Start.IsZero() && !span.End.IsZero() && !span.Start.Before(span.End) {
			continue // the participation lies outside the resource's period
		}
		if span.End.IsZero() && typ == "Encounter" && slices.Contains(encounterEnded, str(m, "status")) {
			continue // over, but not said when: never an open-ended relationship
		}
		if !strings.HasPrefix(pOrg, "Organization/") {
			pOrg = ""
		}
		rel := consentstore.Relationship{Kind: kind, Patient: subject, Practitioner: ref, Organization: pOrg,
			Start: span.Start, End: span.End, Source: s.Ref}
		rel.ID = consentstore.RelationshipID(kind, fmt.Sprintf("%s#participant[%d]", s.Ref, i), subject, ref)
		if err := rel.Validate(); err != nil {
			return Source{}, fmt.Errorf("participant[%d]: %w", i, err)
		}
		s.Relationships = append(s.Relationships, rel)
	}
	return s, nil
}

func intersect(a, b fhirconsent.Period) fhirconsent.Period {
	out := a
	if !b.Start.IsZero() && (out.Start.IsZero() || b.Start.After(out.Start)) {
		out.Start = b.Start
	}
	if !b.End.IsZero() && (out.End.IsZero() || b.End.Before(out.End)) {
		out.End = b.End
	}
	return out
}

func periodOf(v any) (fhirconsent.Period, error) {
	m, _ := v.(map[string]any)
	if m == nil {
		return fhirconsent.Period{}, nil
	}
	p, err := fhirconsent.ParsePeriod(str(m, "start"), str(m, "end"))
	if err != nil {
		return p, err
	}
	if !p.Start.IsZero() {
		p.Start = p.Start.UTC()
	}
	if !p.End.IsZero() {
		p.End = p.End.UTC()
	}
	return p, nil
}

func refOf(v any) string {
	m, _ := v.(map[string]any)
	return str(m, "reference")
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
