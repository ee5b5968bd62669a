package consent_test

import (
	"testing"

	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
)

// BenchmarkEvaluate evaluates a typical consent: a permit with three nested
// deny provisions (an actor, a confidentiality label, a purpose).
func BenchmarkEvaluate(b *testing.B) {
	c := mustParse(b, r4("bench", "2020-01-01", `{"type":"permit","period":{"start":"2019-11-01","end":"2029-01-01"},"provision":[`+
		`{"type":"deny",`+actorPract+`,`+actionAccess+`},`+
		`{"type":"deny","actor":[{"reference":{"reference":"Organization/54"}}],`+labelR+`},`+
		`{"type":"deny","purpose":[{"code":"HMARKT"}]}]}`))
	cs := []*fhirconsent.Consent{c}
	for _, bc := range []struct {
		name string
		opts []reqOpt
	}{
		{"case=permit", []reqOpt{subject("Practitioner/002"), label("N")}},
		{"case=deny", []reqOpt{label("V")}},
		{"case=search", []reqOpt{search(), subject("Practitioner/002")}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := consent.NewQuery(rq(bc.opts...), day("2024-01-01"))
			b.ReportAllocs()
			for b.Loop() {
				_ = consent.Evaluate(&q, cs, consent.MostRecent)
			}
		})
	}
	b.Run("case=search-root-label-deny", func(b *testing.B) {
		cs := []*fhirconsent.Consent{mustParse(b, r4("root", "2020-01-01", `{"type":"deny",`+labelR+`}`))}
		q := consent.NewQuery(rq(search()), day("2024-01-01"))
		b.ReportAllocs()
		for b.Loop() {
			_ = consent.Evaluate(&q, cs, consent.MostRecent)
		}
	})
	b.Run("case=newquery+evaluate", func(b *testing.B) {
		req := rq(label("N"))
		b.ReportAllocs()
		for b.Loop() {
			q := consent.NewQuery(req, day("2024-01-01"))
			_ = consent.Evaluate(&q, cs, consent.MostRecent)
		}
	})
}
