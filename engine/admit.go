package engine

import (
	"fmt"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// Subject kinds (CheckRequest.subject.kind).
const (
	KindPractitioner  = "practitioner"
	KindPatient       = "patient"
	KindRelatedPerson = "related-person"
	KindDevice        = "device"
	KindService       = "service"
)

// Roles whose holder must be of the kind of the same name.
const (
	RolePatient       = "patient"
	RoleRelatedPerson = "related-person"
)

// kindHoldsType reports whether a subject of kind may have an id of the
// resource type typ. A service (a backend acting for an organization) is a
// Device or an Organization; an unstated kind may be any type (it holds no
// role: see ROLE_KIND_MISMATCH).
func kindHoldsType(kind, typ string) bool {
	switch kind {
	case KindPatient:
		return typ == "Patient"
	case KindRelatedPerson:
		return typ == "RelatedPerson"
	case KindPractitioner:
		return typ == "Practitioner" || typ == "PractitionerRole"
	case KindDevice:
		return typ == "Device"
	case KindService:
		return typ == "Device" || typ == "Organization"
	}
	return true
}

// workforceKind reports whether a subject of kind acts for an
// organization: practitioners, devices and services.
func workforceKind(kind string) bool {
	return kind == KindPractitioner || kind == KindDevice || kind == KindService
}

// admit checks, before any fact is looked up, what no policy may overlook
// and returns the reason to deny, or nil:
//
//   - KIND_ID_MISMATCH: subject.id names a resource type the kind cannot
//     be (a patient is a Patient, a related person a RelatedPerson, a
//     practitioner a Practitioner or PractitionerRole, a device a Device, a
//     service a Device or an Organization),
//     so that no rule keyed on the id (the patient's own compartment, a
//     grant, a consent naming the subject) meets a subject of another kind;
//   - ROLE_KIND_MISMATCH: the role "patient" needs kind patient,
//     "related-person" kind related-person, and every other role a
//     workforce kind (practitioner, device, service);
//   - UNKNOWN_ROLE: a role the manifest's roles list does not name;
//   - ORGANIZATION_REQUIRED: a workforce subject without an organization,
//     which would otherwise compare as "another organization" nowhere and
//     as "no organization" everywhere;
//   - UNKNOWN_SECURITY_LABEL: a resource label whose system or code the
//     manifest's labels do not list, which would otherwise be read as
//     unlabelled.
func (b *Bundle) admit(req *chaperonev1.CheckRequest) *chaperonev1.Reason {
	s := req.GetSubject()
	kind := s.GetKind()
	if typ, _, _ := strings.Cut(s.GetId(), "/"); !kindHoldsType(kind, typ) {
		return &chaperonev1.Reason{Code: "KIND_ID_MISMATCH", Message: fmt.Sprintf("a subject of kind %q cannot be a %s", kind, typ)}
	}
	for _, r := range s.GetRoles() {
		var ok bool
		switch r {
		case RolePatient:
			ok = kind == KindPatient
		case RoleRelatedPerson:
			ok = kind == KindRelatedPerson
		default:
			ok = workforceKind(kind)
		}
		if !ok {
			return &chaperonev1.Reason{Code: "ROLE_KIND_MISMATCH", Message: fmt.Sprintf("role %q cannot be held by a subject of kind %q", r, kind)}
		}
		if b.roles != nil && !b.roles[r] {
			return &chaperonev1.Reason{Code: "UNKNOWN_ROLE", Message: fmt.Sprintf("role %q is not one the bundle knows", r)}
		}
	}
	if workforceKind(kind) && s.GetOrganization() == "" {
		return &chaperonev1.Reason{Code: "ORGANIZATION_REQUIRED", Message: "a workforce subject must name its organization"}
	}
	if b.labels != nil {
		for i, l := range req.GetResource().GetSecurityLabels() {
			if !b.labels.known(l.GetSystem(), l.GetCode()) {
				return &chaperonev1.Reason{Code: "UNKNOWN_SECURITY_LABEL",
					Message: fmt.Sprintf("resource.securityLabels[%d] is not a label the bundle knows", i)}
			}
		}
	}
	return nil
}

// labelSet is the manifest's known security labels: canonical system →
// codes. A label without a system is known when some system has its code.
type labelSet map[string]map[string]bool

func newLabelSet(m map[string][]string) (labelSet, error) {
	if m == nil {
		return nil, nil
	}
	ls := labelSet{}
	for sys, codes := range m {
		c := fhirconsent.CanonicalSystem(sys)
		if c == "" {
			return nil, fmt.Errorf("labels: a code system must be named")
		}
		if ls[c] == nil {
			ls[c] = map[string]bool{}
		}
		for _, code := range codes {
			if code == "" {
				return nil, fmt.Errorf("labels: %s: an empty code", sys)
			}
			ls[c][code] = true
		}
	}
	return ls, nil
}

func (ls labelSet) known(system, code string) bool {
	if system == "" {
		for _, codes := range ls {
			if codes[code] {
				return true
			}
		}
		return false
	}
	return ls[fhirconsent.CanonicalSystem(system)][code]
}
