package proxy_test

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkSearchPage: a searchset page of 100 entries of the own tenant
// through the proxy, in process with a loopback PDP and FHIR server: the
// proxy's and the PDP's CPU per page together.
func BenchmarkSearchPage(b *testing.B) {
	var entries []string
	for i := range 100 {
		entries = append(entries, `{"fullUrl":"UPSTREAM/Observation/o`+fmt.Sprint(i)+`","resource":`+res("Observation", fmt.Sprint("o", i), "o1", "Patient/p1", `,"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":72,"unit":"/min"}`)+`}`)
	}
	page := `{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(entries, ",") + `]}`
	t := &testing.T{}
	r := newRig(t, map[string]string{"GET /Observation?patient=Patient/p1": page}, "")
	b.ReportAllocs()
	for b.Loop() {
		got := r.do(t, "GET", "/Observation?patient=Patient/p1", "")
		if got.status != 200 || strings.Count(got.body, `"fullUrl"`) != 100 {
			b.Fatalf("%d %.300s", got.status, got.body)
		}
	}
}
