package fhirconsent

import "fmt"

// ParsePeriod reads a FHIR Period's start and end ("" for absent) as a
// [Period]: the end is exclusive at the value's precision (an end
// "2026-01-31" includes all of that day). An end not after the start is an
// error.
func ParsePeriod(start, end string) (Period, error) {
	var p Period
	if start != "" {
		t, _, ok := fhirTime(start)
		if !ok {
			return p, fmt.Errorf("start: invalid dateTime %q", start)
		}
		p.Start = t
	}
	if end != "" {
		_, next, ok := fhirTime(end)
		if !ok {
			return p, fmt.Errorf("end: invalid dateTime %q", end)
		}
		p.End = next
	}
	if !p.Start.IsZero() && !p.End.IsZero() && !p.Start.Before(p.End) {
		return p, fmt.Errorf("end: before start")
	}
	return p, nil
}
