package engine

import (
	"net/url"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// SMART on FHIR scope permissions, one bit per letter of a v2 scope.
const (
	scopeC uint8 = 1 << iota
	scopeR
	scopeU
	scopeD
	scopeS
)

// interactionNeeds maps a FHIR interaction to the SMART v2 permissions it
// needs: read and vread need r; search and history s (history lists
// versions like a search); create c; update and patch u; delete d; a bulk
// export r and s; an operation r.
var interactionNeeds = map[fhir.Interaction]uint8{
	fhir.Read:      scopeR,
	fhir.Vread:     scopeR,
	fhir.Search:    scopeS,
	fhir.History:   scopeS,
	fhir.Create:    scopeC,
	fhir.Update:    scopeU,
	fhir.Patch:     scopeU,
	fhir.Delete:    scopeD,
	fhir.Export:    scopeR | scopeS,
	fhir.Operation: scopeR,
}

// scopeFacts is what the subject's SMART scopes say about one request.
type scopeFacts struct {
	// present: the subject carries at least one resource scope, or one
	// that was meant as a resource scope but does not parse.
	present bool
	// allows: the scopes together grant the interaction on this resource.
	allows bool
	// levels that granted it: "patient", "user", "system".
	levels []string
}

// smartScope is one parsed SMART resource scope.
type smartScope struct {
	level, typ string
	bits       uint8
	query      url.Values // nil: no restriction
}

// scopeKind says what a scope string is.
type scopeKind uint8

const (
	scopeOther     scopeKind = iota // not a resource scope (openid, launch/patient, …)
	scopeResource                   // a resource scope that parses
	scopeMalformed                  // meant as a resource scope, does not parse: grants nothing
)

// nonResourceScopes are the SMART and OpenID scopes that say nothing about
// resources.
var nonResourceScopes = map[string]bool{
	"openid": true, "profile": true, "fhirUser": true, "launch": true,
	"offline_access": true, "online_access": true, "email": true,
}

// evaluateScopes parses the subject's SMART scopes, v2
// (`patient/Observation.rs`, `user/*.cruds`, with an optional `?query`) and
// v1 (`.read`, `.write`, `.*`, mapped to rs, cud and cruds), and says
// whether they grant the request. They fail closed:
//
//   - a scope meant as a resource scope that does not parse
//     (`patient/Observation.sr`, `Patient/Observation.rs`) makes scopes
//     present and grants nothing;
//   - a scope with a query grants only when the request is shown to satisfy
//     it: `category` and `code` token parameters (system|code, code,
//     |code, system|; a comma is "or", repeated parameters "and") matched
//     against resource.categories and resource.codes; any other parameter
//     cannot be shown and grants nothing;
//   - `patient/` scopes bind to subject.launchPatient: without it they grant
//     nothing, with it only that patient's compartment (resource.patient).
func evaluateScopes(req *chaperonev1.CheckRequest) scopeFacts {
	var f scopeFacts
	res := req.GetResource()
	need := interactionNeeds[fhir.Interaction(req.GetAction())]
	launch := req.GetSubject().GetLaunchPatient()
	var granted uint8
	for _, s := range req.GetSubject().GetScopes() {
		sc, kind := parseScope(s)
		switch kind {
		case scopeOther:
			continue
		case scopeMalformed:
			f.present = true
			continue
		}
		f.present = true
		if sc.typ != "*" && sc.typ != res.GetType() {
			continue
		}
		if sc.level == "patient" && (launch == "" || res.GetPatient() != launch) {
			continue
		}
		if sc.query != nil && !queryHolds(sc.query, res) {
			continue
		}
		if sc.bits&need != 0 {
			granted |= sc.bits & need
			if !containsString(f.levels, sc.level) {
				f.levels = append(f.levels, sc.level)
			}
		}
	}
	f.allows = need != 0 && granted&need == need
	if !f.allows {
		f.levels = nil
	}
	return f
}

// parseScope reads one scope string.
func parseScope(s string) (smartScope, scopeKind) {
	if nonResourceScopes[s] || strings.HasPrefix(s, "launch/") {
		return smartScope{}, scopeOther
	}
	level, rest, hasSlash := strings.Cut(s, "/")
	if !hasSlash {
		// A bare word is not a resource scope unless it starts like one.
		l := strings.ToLower(s)
		if strings.HasPrefix(l, "patient") || strings.HasPrefix(l, "user") || strings.HasPrefix(l, "system") {
			return smartScope{}, scopeMalformed
		}
		return smartScope{}, scopeOther
	}
	if level != "patient" && level != "user" && level != "system" {
		return smartScope{}, scopeMalformed
	}
	typ, perms, ok := strings.Cut(rest, ".")
	if !ok || !validScopeType(typ) {
		return smartScope{}, scopeMalformed
	}
	sc := smartScope{level: level, typ: typ}
	perms, query, hasQuery := strings.Cut(perms, "?")
	bits, ok := scopeBits(perms)
	if !ok {
		return smartScope{}, scopeMalformed
	}
	sc.bits = bits
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return smartScope{}, scopeMalformed
		}
		sc.query = q
	}
	return sc, scopeResource
}

// validScopeType: "*" or a FHIR resource type ([fhir.IsResourceType]): a
// scope for a type that does not exist is malformed, not a scope that
// happens to grant nothing.
func validScopeType(t string) bool { return t == "*" || fhir.IsResourceType(t) }

// scopeBits reads the permission part of a scope: v1 words or v2 letters
// (which must be in the order c, r, u, d, s).
func scopeBits(p string) (uint8, bool) {
	switch p {
	case "read":
		return scopeR | scopeS, true
	case "write":
		return scopeC | scopeU | scopeD, true
	case "*":
		return scopeC | scopeR | scopeU | scopeD | scopeS, true
	}
	if p == "" {
		return 0, false
	}
	var bits uint8
	last := -1
	for _, ch := range p {
		i := strings.IndexRune("cruds", ch)
		if i < 0 || i <= last {
			return 0, false
		}
		last = i
		bits |= 1 << i
	}
	return bits, true
}

// queryHolds reports whether the resource is shown to satisfy every
// parameter of a scope's query.
func queryHolds(q url.Values, res *chaperonev1.Resource) bool {
	for name, values := range q {
		var have []*chaperonev1.Coding
		switch name {
		case "category":
			have = res.GetCategories()
		case "code":
			have = res.GetCodes()
		default:
			return false
		}
		for _, v := range values {
			if !tokenMatchesAny(v, have) {
				return false
			}
		}
	}
	return true
}

// tokenMatchesAny reports whether one of the comma-separated FHIR token
// values of a search parameter matches one of the codings.
func tokenMatchesAny(param string, have []*chaperonev1.Coding) bool {
	for _, tok := range strings.Split(param, ",") {
		if tok == "" {
			continue
		}
		system, code, hasSystem := strings.Cut(tok, "|")
		if !hasSystem {
			code, system = system, ""
		}
		system = strings.TrimRight(system, "/")
		for _, c := range have {
			have := strings.TrimRight(c.GetSystem(), "/")
			switch {
			case !hasSystem: // code: any system
				if c.GetCode() == code {
					return true
				}
			case system == "": // |code: no system
				if have == "" && c.GetCode() == code {
					return true
				}
			case code == "": // system|: any code of the system
				if have == system {
					return true
				}
			default:
				if have == system && c.GetCode() == code {
					return true
				}
			}
		}
	}
	return false
}
