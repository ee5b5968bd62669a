package authzen_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/authzen"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/server"
)

// inProcess is the server with the door as an http.Handler, for property
// and fuzz tests that send thousands of requests.
func inProcess(t testing.TB) http.Handler {
	t.Helper()
	eng := testkit.ReferenceEngine(t)
	v := testkit.Validator(t)
	return server.New(eng, v, server.WithRecorder(&recorder{}), server.WithDoor(door))
}

func serve(h http.Handler, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, authzen.EvaluationPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

var known = map[string][]string{
	"subject":  {"roles", "scopes", "organization", "clientId", "launchPatient", "identifiers", "organizationIdentifiers"},
	"resource": {"patient", "organization", "author", "securityLabels", "codes", "categories", "profiles", "date"},
	"context":  {"purposeOfUse", "breakGlassReason", "networkZone", "deviceTrust", "ip", "correlationId", "time", "supported_obligations"},
}

// TestUnknownKeyNeverAllows: a key Chaperone does not know, inside any
// properties or the context of an allowed request, whatever its value,
// turns the answer into false UNKNOWN_PROPERTY naming it: a misspelt
// attribute never loosens a decision.
func TestUnknownKeyNeverAllows(t *testing.T) {
	t.Parallel()
	h := inProcess(t)
	if w := serve(h, allowBody); !strings.Contains(w.Body.String(), `"decision":true`) {
		t.Fatalf("the base request is not allowed: %s", w.Body)
	}
	rapid.Check(t, func(rt *rapid.T) {
		where := rapid.SampledFrom([]string{"subject", "action", "resource", "context"}).Draw(rt, "where")
		key := rapid.StringMatching(`[A-Za-z_][A-Za-z0-9_.-]{0,20}`).Draw(rt, "key")
		if slices.Contains(known[where], key) {
			rt.Skip("a known key")
		}
		value := rapid.SampledFrom([]string{`"x"`, `true`, `null`, `[]`, `{}`, `"TREAT"`, `["clinician"]`, `1`}).Draw(rt, "value")
		var m map[string]any
		if err := json.Unmarshal([]byte(allowBody), &m); err != nil {
			rt.Fatal(err)
		}
		var v any
		_ = json.Unmarshal([]byte(value), &v)
		var obj map[string]any
		if where == "context" {
			obj = m["context"].(map[string]any)
		} else {
			e := m[where].(map[string]any)
			if e["properties"] == nil {
				e["properties"] = map[string]any{}
			}
			obj = e["properties"].(map[string]any)
		}
		obj[key] = v
		body, _ := json.Marshal(m)
		w := serve(h, string(body))
		var out struct {
			Decision bool `json:"decision"`
			Context  struct {
				Reasons     []string          `json:"reasons"`
				ReasonAdmin map[string]string `json:"reason_admin"`
			} `json:"context"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &out) != nil {
			rt.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if out.Decision || !slices.Equal(out.Context.Reasons, []string{authzen.ReasonUnknownProperty}) || !strings.Contains(out.Context.ReasonAdmin["en"], key) {
			rt.Fatalf("%s with %q: %s", where, key, w.Body)
		}
	})
}

// FuzzEvaluation: whatever the body, the door answers 200 with a boolean
// decision or 400/413 with a message; never a panic, never another status.
func FuzzEvaluation(f *testing.F) {
	for _, s := range []string{allowBody, `{}`, `[]`, `{"subject": null}`, evaluations("", itemAllow, itemDeny),
		strings.Replace(allowBody, `"roles"`, `"role"`, 1), strings.Replace(allowBody, `"TREAT"`, `5`, 1)} {
		f.Add(s)
	}
	h := inProcess(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{authzen.EvaluationPath, authzen.EvaluationsPath} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			switch w.Code {
			case 200:
				var out map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
					t.Fatalf("%s: 200 with %q", path, w.Body)
				}
				if _, ok := out["decision"].(bool); !ok {
					if _, ok := out["evaluations"].([]any); !ok {
						t.Fatalf("%s: 200 without a decision: %s", path, w.Body)
					}
				}
			case 400, 413:
			default:
				t.Fatalf("%s: status %d: %s", path, w.Code, w.Body)
			}
		}
	})
}
