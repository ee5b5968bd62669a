package fhirrest_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir"
	"github.com/chaperone-pdp/chaperone/fhirrest"
)

func entry(method, url string) string {
	return fmt.Sprintf(`{"request":{"method":%q,"url":%q}}`, method, url)
}

func bundleOf(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

func TestMapAllBatch(t *testing.T) {
	t.Parallel()
	m := newMapper(t)
	body := bundleOf("transaction",
		`{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Observation"}}`,
		entry("GET", "Patient/p1"),
		entry("GET", "Observation?patient=p1&code=x"),
		entry("PUT", "Observation/o1"),
		entry("DELETE", "Condition/c1"),
		entry("GET", "Patient/p1/Observation"),
		entry("GET", "Observation/o1/_history/2"),
	)
	got, err := m.MapAll("POST", "/fhir", "", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []fhirrest.Mapped{
		{Action: fhir.Create, Type: "Observation"},
		{Action: fhir.Read, Type: "Patient", ID: "p1", Patient: "Patient/p1"},
		{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1", PerEntryCheck: true},
		{Action: fhir.Update, Type: "Observation", ID: "o1"},
		{Action: fhir.Delete, Type: "Condition", ID: "c1"},
		{Action: fhir.Search, Type: "Observation", Patient: "Patient/p1"},
		{Action: fhir.Vread, Type: "Observation", ID: "o1", VersionID: "2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("MapAll =\n %+v\nwant\n %+v", got, want)
	}
	// The root with a trailing slash is the same batch.
	if got2, err := m.MapAll("POST", "/fhir/", "_format=json", []byte(body)); err != nil || !slices.Equal(got2, want) {
		t.Errorf("MapAll on /fhir/ = %+v, %v", got2, err)
	}
}

func TestMapAllRefused(t *testing.T) {
	t.Parallel()
	m := newMapper(t)
	for _, tc := range []struct {
		name, query, body string
		err               error
	}{
		{"no body", "", "", fhirrest.ErrBodyRequired},
		{"blank body", "", " \n", fhirrest.ErrBodyRequired},
		{"not JSON", "", "patient=p1", fhirrest.ErrBadBundle},
		{"not a Bundle", "", `{"resourceType":"Patient","type":"batch","entry":[` + entry("GET", "Patient/p1") + `]}`, fhirrest.ErrBadBundle},
		{"a searchset", "", bundleOf("searchset", entry("GET", "Patient/p1")), fhirrest.ErrBadBundle},
		{"a history bundle", "", bundleOf("history", entry("GET", "Patient/p1")), fhirrest.ErrBadBundle},
		{"no entries", "", bundleOf("batch"), fhirrest.ErrBadBundle},
		{"entry without request", "", bundleOf("batch", `{"resource":{}}`), fhirrest.ErrBadBundle},
		{"duplicate member", "", `{"resourceType":"Bundle","type":"batch","type":"history","entry":[` + entry("GET", "Patient/p1") + `]}`, fhirrest.ErrBadBundle},
		{"member twice in other case", "", bundleOf("batch", `{"request":{"method":"DELETE","Method":"GET","url":"Patient/p1"}}`), fhirrest.ErrBadBundle},
		{"non-ASCII member", "", bundleOf("batch", `{"request":{"method":"GET","url":"Patient/p1","\u00fc":1}}`), fhirrest.ErrBadBundle},
		{"wrong JSON types", "", `{"resourceType":"Bundle","type":"batch","entry":{}}`, fhirrest.ErrBadBundle},
		{"nested batch", "", bundleOf("batch", entry("POST", "")), fhirrest.ErrBadBundle},
		{"absolute entry url", "", bundleOf("batch", entry("GET", "/Patient/p1")), fhirrest.ErrBadBundle},
		{"full URL entry", "", bundleOf("batch", entry("GET", "https://h/fhir/Patient/p1")), fhirrest.ErrBadBundle},
		{"fragment", "", bundleOf("batch", entry("GET", "Patient/p1#x")), fhirrest.ErrBadPath},
		{"conditional create", "", bundleOf("transaction", `{"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=x"}}`), fhirrest.ErrConditional},
		{"conditional update", "", bundleOf("transaction", entry("PUT", "Patient?identifier=x")), fhirrest.ErrConditional},
		{"POST search entry", "", bundleOf("batch", entry("POST", "Observation/_search")), fhirrest.ErrBodyRequired},
		{"one bad entry refuses all", "", bundleOf("batch", entry("GET", "Patient/p1"), entry("GET", "Patient?_has:Observation:patient:code=x")), fhirrest.ErrReverseChain},
		{"encoded slash in entry", "", bundleOf("batch", entry("GET", "Patient/p1%2F..")), fhirrest.ErrEncodedSlash},
		{"unknown method entry", "", bundleOf("batch", entry("TRACE", "Patient/p1")), fhirrest.ErrMethod},
		{"search parameter on batch", "patient=p1", bundleOf("batch", entry("GET", "Patient/p1")), fhirrest.ErrParameter},
		{"too many entries", "", bundleOf("batch", slices.Repeat([]string{entry("GET", "Patient/p1")}, fhirrest.MaxEntries+1)...), fhirrest.ErrBadBundle},
		{"too deep", "", strings.Repeat("[", 100) + strings.Repeat("]", 100), fhirrest.ErrBadBundle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := m.MapAll("POST", "/fhir", tc.query, []byte(tc.body))
			if !errors.Is(err, tc.err) || got != nil {
				t.Errorf("MapAll = %+v, %v; want %v", got, err, tc.err)
			}
		})
	}
}

// A refused entry names its position, so an operator can find it.
func TestMapAllNamesEntry(t *testing.T) {
	t.Parallel()
	m := newMapper(t)
	_, err := m.MapAll("POST", "/fhir", "", []byte(bundleOf("batch", entry("GET", "Patient/p1"), entry("GET", "observation/o1"))))
	var r *fhirrest.RefusedError
	if !errors.As(err, &r) || r.Reason != fhirrest.ReasonUnknownType || !strings.Contains(r.Detail, "entry 1") {
		t.Errorf("MapAll = %v, want UNKNOWN_TYPE naming entry 1", err)
	}
	var e *fhirrest.EntryError
	if !errors.As(err, &e) || e.Index != 1 || e.Err.Reason != fhirrest.ReasonUnknownType {
		t.Errorf("MapAll = %#v, want an EntryError of entry 1", err)
	}
}
