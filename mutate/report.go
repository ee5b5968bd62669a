package mutate

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteText writes the report for people: one line per surviving mutant
// ("file:line:col: mutation: original"), the equivalent mutants with their
// reasons, a line of counts, and the final [Report.Line]. verbose adds
// the killed and invalid mutants.
func WriteText(w io.Writer, r *Report, verbose bool) error {
	ew := &errWriter{w: w}
	for _, o := range r.Outcomes {
		switch {
		case o.Status == Survived:
			ew.printf("%s\n", o.String())
		case o.Status == Equivalent && o.KilledBy != "":
			ew.printf("%s: marked equivalent but killed by %s\n", o.String(), o.KilledBy)
		case verbose && o.Status == Killed:
			ew.printf("killed %s (by %s)\n", o.String(), o.KilledBy)
		case verbose && o.Status == Invalid:
			ew.printf("invalid %s: %s\n", o.String(), o.Error)
		}
	}
	for _, o := range r.Outcomes {
		if o.Status == Equivalent {
			ew.printf("equivalent %s — %s\n", o.String(), o.Equivalent)
		}
	}
	ew.printf("%d mutants: %d killed, %d survived, %d equivalent, %d do not compile (%.1fs)\n",
		len(r.Outcomes), r.Killed, r.Survived, r.Equivalent, r.Invalid, r.Duration.Seconds())
	ew.printf("%s\n", r.Line())
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

type jsonMutant struct {
	File       string `json:"file"`
	Line       int    `json:"line"`
	Col        int    `json:"col"`
	Op         Op     `json:"op"`
	Mutation   string `json:"mutation"`
	Original   string `json:"original"`
	Status     Status `json:"status"`
	KilledBy   string `json:"killedBy,omitempty"`
	Equivalent string `json:"equivalent,omitempty"`
	Error      string `json:"error,omitempty"`
}

type jsonReport struct {
	Mutants    []jsonMutant `json:"mutants"`
	Total      int          `json:"total"`
	Killed     int          `json:"killed"`
	Survived   int          `json:"survived"`
	Equivalent int          `json:"equivalent"`
	Invalid    int          `json:"invalid"`
	Score      float64      `json:"score"`
	Seconds    float64      `json:"seconds"`
}

// WriteJSON writes the report as one JSON document: every mutant with its
// status, the counts and the score (percent of killed and survived
// mutants killed).
func WriteJSON(w io.Writer, r *Report) error {
	out := jsonReport{
		Mutants: []jsonMutant{}, Total: len(r.Outcomes), Killed: r.Killed, Survived: r.Survived,
		Equivalent: r.Equivalent, Invalid: r.Invalid, Score: r.Score(), Seconds: r.Duration.Seconds(),
	}
	for _, o := range r.Outcomes {
		out.Mutants = append(out.Mutants, jsonMutant{
			File: o.File, Line: o.Line, Col: o.Col, Op: o.Op, Mutation: o.Mutation, Original: o.Original,
			Status: o.Status, KilledBy: o.KilledBy, Equivalent: o.Equivalent, Error: o.Error,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
