package fhirrest

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/chaperone-pdp/chaperone/fhir"
)

// Option configures a [Mapper].
type Option func(*Mapper) error

// WithChains allows chained search parameters, refused by default: for
// each resource type, the chained parameter names accepted on a GET search
// of that type (the plain search T?name=… and the compartment search
// Patient/p/T?name=…), spelt exactly as sent, e.g. "subject:Patient.name"
// or "patient.birthdate". A chain filters the answer on another resource's
// content, so which resources come back tells something of resources the
// user may not read: allow a chain only when that is acceptable. A chained
// parameter is never a patient binding, and an allowed one is otherwise
// ignored by the mapping; chains in batch entries, in POST _search bodies
// and those not listed are still refused CHAINED_PARAMETER.
func WithChains(chains map[string][]string) Option {
	return func(m *Mapper) error {
		for typ, names := range chains {
			if !fhir.IsResourceType(typ) {
				return fmt.Errorf("chained parameters of %q: not a resource type", typ)
			}
			for _, n := range names {
				if err := checkChain(n); err != nil {
					return fmt.Errorf("chained parameter %q of %s: %w", n, typ, err)
				}
				if m.chains == nil {
					m.chains = map[string]map[string]bool{}
				}
				if m.chains[typ] == nil {
					m.chains[typ] = map[string]bool{}
				}
				m.chains[typ][n] = true
			}
		}
		return nil
	}
}

// checkChain accepts name[:Type](.name[:Type])+ of plain tokens.
func checkChain(n string) error {
	parts := strings.Split(n, ".")
	if len(parts) < 2 || strings.HasPrefix(strings.ToLower(n), "_") {
		return fmt.Errorf("want a chain such as subject:Patient.name")
	}
	for _, p := range parts {
		name, typ, typed := strings.Cut(p, ":")
		if !token(name) || typed && !fhir.IsResourceType(typ) {
			return fmt.Errorf("want a chain such as subject:Patient.name")
		}
	}
	return nil
}

// unchain removes from a GET search's query the chained parameters allowed
// for the searched type; everything else is left for the mapping to
// accept or refuse. A query the mapping would refuse as a whole (double
// encoding, a raw ; or #) is left as it is.
func (m *Mapper) unchain(method string, rel []string, rawQuery string) string {
	if len(m.chains) == 0 || method != "GET" && method != "HEAD" || rawQuery == "" ||
		strings.Contains(rawQuery, "%25") || strings.ContainsAny(rawQuery, ";#") {
		return rawQuery
	}
	var typ string
	switch {
	case len(rel) == 1:
		typ = rel[0]
	case len(rel) == 3 && rel[0] == "Patient":
		typ = rel[2]
	default:
		return rawQuery
	}
	allowed := m.chains[typ]
	if allowed == nil {
		return rawQuery
	}
	var kept []string
	for piece := range strings.SplitSeq(rawQuery, "&") {
		k, _, _ := strings.Cut(piece, "=")
		if key, err := url.QueryUnescape(k); err == nil && allowed[key] {
			continue
		}
		kept = append(kept, piece)
	}
	return strings.Join(kept, "&")
}
