package fhirrest_test

import "testing"

func BenchmarkMap(b *testing.B) {
	m := newMapper(b)
	for _, bc := range []struct{ name, method, path, query string }{
		{"interaction=read", "GET", "/fhir/Observation/o1", ""},
		{"interaction=search", "GET", "/fhir/Observation", "patient=Patient%2Fp1&code=http%3A%2F%2Floinc.org%7C8867-4&_count=50"},
		{"interaction=compartment", "GET", "/fhir/Patient/p1/Observation", "code=8867-4&_sort=-date"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Map(bc.method, bc.path, bc.query, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
