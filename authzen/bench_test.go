package authzen_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// checkBody is allowBody as a Connect JSON Check: the same decision.
const checkBody = `{"subject": {"kind": "practitioner", "id": "Practitioner/p1", "roles": ["clinician"], "organization": "Organization/o1"}, "action": "read", "resource": {"type": "Observation", "id": "o1", "patient": "Patient/52", "organization": "Organization/o1"}, "purposeOfUse": "TREAT", "context": {"networkZone": "clinic", "deviceTrust": "managed"}}`

// BenchmarkDoor: one allowed decision through the server's http.Handler,
// asked as an AuthZEN evaluation and as a Connect JSON Check.
func BenchmarkDoor(b *testing.B) {
	h := inProcess(b)
	for _, bc := range []struct{ name, path, body, want string }{
		{"door=authzen", authzen.EvaluationPath, allowBody, `"decision":true`},
		{"door=check", chaperonev1connect.DecisionServiceCheckProcedure, checkBody, `"DECISION_ALLOW"`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := postTo(h, bc.path, bc.body)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), bc.want) {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				if w := postTo(h, bc.path, bc.body); w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

func postTo(h http.Handler, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}
