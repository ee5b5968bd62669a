package engine

import "strings"

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
var interactionNeeds = map[string]uint8{
	"read":      scopeR,
	"vread":     scopeR,
	"search":    scopeS,
	"history":   scopeS,
	"create":    scopeC,
	"update":    scopeU,
	"patch":     scopeU,
	"delete":    scopeD,
	"export":    scopeR | scopeS,
	"operation": scopeR,
}

// scopeFacts is what the subject's SMART scopes say about one request.
type scopeFacts struct {
	// present: the subject carries at least one resource scope.
	present bool
	// allows: some scope grants the interaction on the resource type.
	allows bool
	// levels that granted it: "patient", "user", "system".
	levels []string
}

// evaluateScopes parses SMART scopes, v2 (`patient/Observation.rs`,
// `user/*.cruds`, with an optional `?query` restriction, which is ignored
// here and left to policies) and v1 (`.read`, `.write`, `.*`, mapped to
// rs, cud and cruds), and says whether they allow the interaction on the
// resource type. Scopes that are not resource scopes (openid, fhirUser,
// launch…) are skipped.
func evaluateScopes(scopes []string, resourceType, action string) scopeFacts {
	var f scopeFacts
	need := interactionNeeds[action]
	var granted uint8
	for _, s := range scopes {
		level, rest, ok := strings.Cut(s, "/")
		if !ok || (level != "patient" && level != "user" && level != "system") {
			continue
		}
		typ, perms, ok := strings.Cut(rest, ".")
		if !ok || typ == "" {
			continue
		}
		perms, _, _ = strings.Cut(perms, "?")
		bits, ok := scopeBits(perms)
		if !ok {
			continue
		}
		f.present = true
		if typ != "*" && typ != resourceType {
			continue
		}
		if bits&need != 0 {
			granted |= bits & need
			if !containsString(f.levels, level) {
				f.levels = append(f.levels, level)
			}
		}
	}
	f.allows = need != 0 && granted&need == need
	if !f.allows {
		f.levels = nil
	}
	return f
}

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
