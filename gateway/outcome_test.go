package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/gateway"
)

// refOutcome is the OperationOutcome as encoding/json writes it.
func refOutcome(status int, codes []string, expression string) []byte {
	type coding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	type details struct {
		Coding []coding `json:"coding"`
		Text   string   `json:"text"`
	}
	type issue struct {
		Severity   string   `json:"severity"`
		Code       string   `json:"code"`
		Details    details  `json:"details"`
		Expression []string `json:"expression,omitempty"`
	}
	type outcome struct {
		ResourceType string  `json:"resourceType"`
		Issue        []issue `json:"issue"`
	}
	kind := map[int]string{http.StatusUnauthorized: "login", http.StatusInternalServerError: "exception"}[status]
	if kind == "" {
		kind = "forbidden"
	}
	var expr []string
	if expression != "" {
		expr = []string{expression}
	}
	o := outcome{ResourceType: "OperationOutcome"}
	for _, c := range codes {
		o.Issue = append(o.Issue, issue{Severity: "error", Code: kind, Details: details{Coding: []coding{{System: gateway.ReasonSystem, Code: c}}, Text: c}, Expression: expr})
	}
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	return b
}

// The OperationOutcome written by hand is, byte for byte, what
// encoding/json writes, for plain codes and for codes it escapes.
func TestOperationOutcomeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	odd := []string{"UNAUTHENTICATED", "PURPOSE_REQUIRED", "Bundle.entry[3]", "a<b", "x&y", `q"`, "\\", "\x01", "é", "\u2028", "\xff", "", "a b:c/d"}
	rapid.Check(t, func(t *rapid.T) {
		status := rapid.SampledFrom([]int{http.StatusForbidden, http.StatusUnauthorized, http.StatusInternalServerError, http.StatusTeapot}).Draw(t, "status")
		var codes []string
		for range rapid.IntRange(0, 3).Draw(t, "n") {
			codes = append(codes, rapid.OneOf(rapid.SampledFrom(odd), rapid.String()).Draw(t, "code"))
		}
		expr := rapid.OneOf(rapid.SampledFrom(odd), rapid.String()).Draw(t, "expr")
		if got, want := gateway.OperationOutcomeAt(status, codes, expr), refOutcome(status, codes, expr); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
		if got, want := gateway.OperationOutcome(status, codes), refOutcome(status, codes, ""); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}
