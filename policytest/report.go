package policytest

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report a person reads: one line per failing test
// with what differed, the coverage table when asked, and the final line
// ([Summary.Line]).
func WriteText(w io.Writer, s *Summary, coverage bool) error {
	var b strings.Builder
	for _, sr := range s.Suites {
		for _, r := range sr.Tests {
			if r.Status == Fail {
				fmt.Fprintf(&b, "FAIL %s:%d %s/%s: %s\n", r.File, r.Line, r.Suite, r.Name, strings.Join(r.Diff, "; "))
			}
		}
	}
	if coverage {
		writeCoverage(&b, s.Coverage)
	}
	b.WriteString(s.Line())
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCoverage(b *strings.Builder, c Coverage) {
	b.WriteString("coverage (tests per policy id):\n")
	width := 0
	for _, p := range c.Policies {
		width = max(width, len(p.ID))
	}
	for _, p := range c.Policies {
		fmt.Fprintf(b, "  %-*s %d\n", width, p.ID, p.Hits)
	}
	if u := c.Uncovered(); len(u) > 0 {
		fmt.Fprintf(b, "not covered by any test (%d): %s\n", len(u), strings.Join(u, ", "))
	} else {
		fmt.Fprintf(b, "every policy (%d) is covered\n", len(c.Policies))
	}
}

// jsonReport is the shape of [WriteJSON]'s output.
type jsonReport struct {
	Passed    int              `json:"passed"`
	Failed    int              `json:"failed"`
	Skipped   int              `json:"skipped"`
	Suites    []jsonSuite      `json:"suites"`
	Coverage  []PolicyCoverage `json:"coverage,omitempty"`
	Uncovered []string         `json:"uncovered,omitempty"`
}

type jsonSuite struct {
	Name  string     `json:"name"`
	File  string     `json:"file"`
	Tests []jsonTest `json:"tests"`
}

type jsonTest struct {
	Name       string   `json:"name"`
	Line       int      `json:"line"`
	Status     Status   `json:"status"`
	Diff       []string `json:"diff,omitempty"`
	Skip       string   `json:"skip,omitempty"`
	Decision   string   `json:"decision,omitempty"`
	Policies   []string `json:"policies,omitempty"`
	DurationMS float64  `json:"durationMs"`
}

// WriteJSON writes the summary as one JSON document, with per-policy
// coverage when asked.
func WriteJSON(w io.Writer, s *Summary, coverage bool) error {
	rep := jsonReport{Passed: s.Passed, Failed: s.Failed, Skipped: s.Skipped, Suites: []jsonSuite{}}
	for _, sr := range s.Suites {
		js := jsonSuite{Name: sr.Name, File: sr.File, Tests: []jsonTest{}}
		for _, r := range sr.Tests {
			jt := jsonTest{Name: r.Name, Line: r.Line, Status: r.Status, Diff: r.Diff, Skip: r.Skip,
				Policies: r.Policies, DurationMS: float64(r.Duration.Microseconds()) / 1000}
			if r.Response != nil {
				jt.Decision = strings.TrimPrefix(r.Response.GetDecision().String(), "DECISION_")
			}
			js.Tests = append(js.Tests, jt)
		}
		rep.Suites = append(rep.Suites, js)
	}
	if coverage {
		rep.Coverage, rep.Uncovered = s.Coverage.Policies, s.Coverage.Uncovered()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	File     string      `xml:"file,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Line      int           `xml:"line,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

// WriteJUnit writes the summary as JUnit XML, one testsuite per suite file.
func WriteJUnit(w io.Writer, s *Summary) error {
	rep := junitSuites{Name: "chaperone", Tests: s.Passed + s.Failed + s.Skipped, Failures: s.Failed, Skipped: s.Skipped}
	for _, sr := range s.Suites {
		js := junitSuite{Name: sr.Name, File: sr.File, Tests: len(sr.Tests)}
		var total float64
		for _, r := range sr.Tests {
			secs := r.Duration.Seconds()
			total += secs
			jc := junitCase{Name: r.Name, Classname: sr.Name, File: r.File, Line: r.Line, Time: fmt.Sprintf("%.6f", secs)}
			switch r.Status {
			case Fail:
				js.Failures++
				jc.Failure = &junitMessage{Message: strings.Join(r.Diff, "; "), Body: strings.Join(r.Diff, "\n")}
			case Skip:
				js.Skipped++
				jc.Skipped = &junitMessage{Message: r.Skip}
			}
			js.Cases = append(js.Cases, jc)
		}
		js.Time = fmt.Sprintf("%.6f", total)
		rep.Suites = append(rep.Suites, js)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
