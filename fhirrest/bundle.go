package fhirrest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxEntries bounds the entries of a batch or transaction Bundle.
const MaxEntries = 1000

// MapAll maps any request to what it asks: one [Mapped] for a plain
// request (as [Mapper.Map]), one per entry, in order, for a batch or
// transaction (POST to the base with a Bundle of type batch or transaction
// as body). A batch or transaction is refused when its body is absent (a
// gateway that does not forward bodies cannot have it decided), is not a
// well-formed Bundle, or when any entry is refused: one entry that cannot
// be mapped refuses the whole request, with an [*EntryError] naming it.
// Every error is a [*RefusedError] or an [*EntryError] wrapping one.
func (m *Mapper) MapAll(method, rawPath, rawQuery string, body []byte) ([]Mapped, error) {
	rel, err := m.rel(rawPath)
	if err != nil {
		return nil, err
	}
	if len(rel) != 0 || method != "POST" {
		one, err := mapRel(method, rel, m.unchain(method, rel, rawQuery), body)
		if err != nil {
			return nil, err
		}
		return []Mapped{one}, nil
	}
	ps, err := parseParams(rawQuery)
	if err != nil {
		return nil, err
	}
	if err := onlyParams(ps, nil, "batch or transaction"); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, refuse(ReasonBodyRequired, "batch or transaction without its Bundle")
	}
	entries, err := parseBundle(body)
	if err != nil {
		return nil, err
	}
	out := make([]Mapped, 0, len(entries))
	for i, e := range entries {
		one, err := mapEntry(e)
		if err != nil {
			var r *RefusedError
			if errors.As(err, &r) {
				return nil, &EntryError{Index: i, Err: &RefusedError{Reason: r.Reason, Detail: strings.TrimSuffix(fmt.Sprintf("entry %d: %s", i, r.Detail), ": ")}}
			}
			return nil, err
		}
		out = append(out, one)
	}
	return out, nil
}

type bundleRequest struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	IfNoneExist string `json:"ifNoneExist"`
}

type bundleEntry struct {
	Request *bundleRequest `json:"request"`
}

type bundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Entry        []bundleEntry `json:"entry"`
}

// parseBundle reads a batch or transaction Bundle. A JSON object with a
// member twice is refused: a server that keeps the first would see
// another request than the one mapped.
func parseBundle(body []byte) ([]bundleEntry, error) {
	if err := noDuplicateMembers(body); err != nil {
		return nil, err
	}
	var b bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, refuse(ReasonBadBundle, "not a JSON Bundle")
	}
	switch {
	case b.ResourceType != "Bundle":
		return nil, refuse(ReasonBadBundle, "resourceType is not Bundle")
	case b.Type != "batch" && b.Type != "transaction":
		return nil, refuse(ReasonBadBundle, "type is not batch or transaction")
	case len(b.Entry) == 0:
		return nil, refuse(ReasonBadBundle, "no entries")
	case len(b.Entry) > MaxEntries:
		return nil, refuse(ReasonBadBundle, fmt.Sprintf("more than %d entries", MaxEntries))
	}
	return b.Entry, nil
}

// mapEntry maps one entry's request: its url is relative to the base,
// with an optional query; a conditional create (ifNoneExist), a nested
// batch and a POST _search (whose form body an entry does not carry) are
// refused.
func mapEntry(e bundleEntry) (Mapped, error) {
	r := e.Request
	switch {
	case r == nil:
		return Mapped{}, refuse(ReasonBadBundle, "no request")
	case r.IfNoneExist != "":
		return Mapped{}, refuse(ReasonConditional, "ifNoneExist")
	case strings.Contains(r.URL, "#"):
		return Mapped{}, refuse(ReasonBadPath, "fragment in url")
	case strings.HasPrefix(r.URL, "/") || strings.Contains(r.URL, "://"):
		return Mapped{}, refuse(ReasonBadBundle, "url is not relative to the base")
	}
	path, query, _ := strings.Cut(r.URL, "?")
	segs, err := splitPath("/" + path)
	if err != nil {
		return Mapped{}, err
	}
	rel, err := relative(nil, segs)
	if err != nil {
		return Mapped{}, err
	}
	switch {
	case len(rel) == 0:
		return Mapped{}, refuse(ReasonBadBundle, "url is not a relative path under the base")
	case r.Method == "POST" && rel[len(rel)-1] == "_search":
		return Mapped{}, refuse(ReasonBodyRequired, "POST _search in an entry")
	}
	return mapRel(r.Method, rel, query, nil)
}

// maxDepth bounds the nesting noDuplicateMembers walks.
const maxDepth = 64

// noDuplicateMembers refuses JSON in which an object has a member twice or
// which nests deeper than maxDepth. Names are compared without case, and a
// name outside ASCII is refused, because encoding/json matches member
// names to fields without case: {"method":"DELETE","Method":"GET"} reads
// as GET here and may run as DELETE on the server.
func noDuplicateMembers(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next string token is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return refuse(ReasonBadBundle, "not JSON")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if name, ok := tok.(string); ok {
				folded := strings.ToLower(name)
				if !ascii(name) || top.seen[folded] {
					return refuse(ReasonBadBundle, "a member appears twice in an object, or has a name that is not ASCII")
				}
				top.seen[folded] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxDepth {
				return refuse(ReasonBadBundle, "nested too deep")
			}
			stack = append(stack, &frame{object: tok == json.Delim('{'), seen: map[string]bool{}, key: tok == json.Delim('{')})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: in an object, a member name comes next.
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true
		}
	}
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
