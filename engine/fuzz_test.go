package engine_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

var reasonCode = regexp.MustCompile(`^[A-Z][A-Z_]*$`)

// FuzzCheck feeds arbitrary bytes to the request decoder and every request
// it accepts to the engine: decoding never panics, bad input is an error,
// and every accepted request gets ALLOW or DENY, each DENY with a reason code.
func FuzzCheck(f *testing.F) {
	for _, seed := range []string{
		`{"subject":{"kind":"practitioner","id":"Practitioner/p1","roles":["clinician"],"organization":"Organization/o1"},"action":"read","resource":{"type":"Observation","patient":"Patient/52","organization":"Organization/o1"},"purposeOfUse":"TREAT"}`,
		`{"subject":{"kind":"patient","id":"Patient/52","roles":["patient"]},"action":"search","resource":{"type":"Observation","patient":"Patient/52"},"purposeOfUse":"PATRQT","context":{"time":"2024-06-01T00:00:00Z"}}`,
		`{"subject":{"id":"x"},"action":"delete","resource":{"type":"Patient","securityLabels":[{"code":"R"}]},"purposeOfUse":"ETREAT","context":{"breakGlassReason":"r","ip":"::1"}}`,
		`{"subject":{},"action":"","resource":{"type":"observation"}}`,
		`{`, `null`, `[]`, `{"requests":[]}`,
	} {
		f.Add([]byte(seed))
	}
	v, err := validation.New()
	if err != nil {
		f.Fatal(err)
	}
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		f.Fatal(err)
	}
	e := engine.New(noConsent, engine.WithRequestTime())
	e.Activate(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &chaperonev1.CheckRequest{}
		if err := v.DecodeJSON(data, req); err != nil {
			if req == nil || err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		resp := e.Check(context.Background(), req)
		switch resp.GetDecision() {
		case chaperonev1.Decision_DECISION_ALLOW:
		case chaperonev1.Decision_DECISION_DENY:
			if len(resp.GetReasons()) == 0 || !reasonCode.MatchString(resp.GetReasons()[0].GetCode()) {
				t.Fatalf("DENY without a reason code: %v", resp)
			}
		default:
			t.Fatalf("decision %v for %s", resp.GetDecision(), data)
		}
	})
}
