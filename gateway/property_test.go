package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/fhirrest"
	"github.com/chaperone-pdp/chaperone/gateway"
)

// uriGen builds request URIs from pieces a FHIR path and query are made
// of, tricky ones included: encodings, dot segments, wrong case, chains.
func uriGen() *rapid.Generator[string] {
	seg := rapid.SampledFrom([]string{
		"Observation", "Patient", "Condition", "DocumentReference", "observation", "Group",
		"x1", "52", "doc-1", "_history", "1", "_search", "$everything", "$export", "$graphql", "metadata",
		"x%2F1", "%2E%2E", "..", ".", "", "x%252F1", "Patient%2F52", "*",
	})
	param := rapid.SampledFrom([]string{
		"patient=Patient/52", "patient=52", "subject=Patient/51", "code=1234-5", "_has:Observation:patient:code=1",
		"subject.name=x", "_include=*", "_include=Observation:patient", "_id=52", "_method=DELETE",
		"patient:missing=true", "x=%2525", "a;b", "_format=json", "_filter=x",
	})
	valid := rapid.SampledFrom([]string{
		"/fhir/Observation/x1", "/fhir/Condition/c1", "/fhir/Observation", "/fhir/Patient/51/Observation",
		"/fhir/Observation/x1/_history/1", "/fhir/Patient/52",
	})
	return rapid.Custom(func(t *rapid.T) string {
		if rapid.Bool().Draw(t, "well-formed") {
			u := valid.Draw(t, "uri")
			if rapid.Bool().Draw(t, "with a parameter") {
				u += "?" + param.Draw(t, "param")
			}
			return u
		}
		base := rapid.SampledFrom([]string{"/fhir", "/FHIR", "/fhir/..", "/other", ""}).Draw(t, "base")
		var b strings.Builder
		b.WriteString(base)
		for range rapid.IntRange(0, 4).Draw(t, "segments") {
			b.WriteString("/" + seg.Draw(t, "segment"))
		}
		if n := rapid.IntRange(0, 3).Draw(t, "params"); n > 0 {
			ps := make([]string, n)
			for i := range ps {
				ps[i] = param.Draw(t, "param")
			}
			b.WriteString("?" + strings.Join(ps, "&"))
		}
		return b.String()
	})
}

// TestDoorNeverAllowsWhatTheMapperRefuses: over loopback HTTP, whatever
// the method and URI, a 200 only ever answers a request the mapper maps,
// a refused request is a 403 naming the mapper's reason and is not
// decided, and a decided request is recorded once with the mapped
// action, type and id.
func TestDoorNeverAllowsWhatTheMapperRefuses(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	url, rec := serve(t, k.gateway(t, gateway.PhaseProxy))
	c := clinician()
	delete(c, "client_id")
	user := "Bearer " + k.sign(t, "ES256", c)
	mapper, err := fhirrest.New("/fhir")
	if err != nil {
		t.Fatal(err)
	}
	var allowed, refused int
	rapid.Check(t, func(rt *rapid.T) {
		method := "GET"
		if rapid.Bool().Draw(rt, "another method") {
			method = rapid.SampledFrom([]string{"HEAD", "POST", "PUT", "PATCH", "DELETE", "get", "OPTIONS"}).Draw(rt, "method")
		}
		uri := uriGen().Draw(rt, "uri")
		before := len(rec.All())
		r := forward(t, url, map[string]string{"Authorization": user, "X-Original-Method": method, "X-Original-URI": uri})
		recs := rec.All()[before:]
		path, query, _ := strings.Cut(uri, "?")
		// The door reads no body: MapAll refuses a batch BODY_REQUIRED
		// and maps anything else as Map does.
		ms, merr := mapper.MapAll(method, path, query, nil)
		var m fhirrest.Mapped
		if merr == nil {
			m = ms[0]
		}
		var re *fhirrest.RefusedError
		switch {
		case uri == "":
			if r.status != http.StatusForbidden || len(recs) != 0 {
				rt.Fatalf("no URI: status %d", r.status)
			}
		case merr != nil:
			if !errors.As(merr, &re) {
				rt.Fatalf("mapper error %v", merr)
			}
			refused++
			if r.status != http.StatusForbidden || len(recs) != 0 {
				rt.Fatalf("%s %s refused %s: status %d, %d records", method, uri, re.Reason, r.status, len(recs))
			}
			if codes := outcomeCodes(t, r); len(codes) != 1 || codes[0] != string(re.Reason) {
				rt.Fatalf("%s %s: codes %v, want %s", method, uri, codes, re.Reason)
			}
		case r.status == http.StatusOK:
			allowed++
			if len(recs) != 1 {
				rt.Fatalf("%s %s: %d records", method, uri, len(recs))
			}
			got := recs[0].Req
			if got.GetAction() != string(m.Action) || got.GetResource().GetId() != m.ID || got.GetResource().GetPatient() != m.Patient {
				rt.Fatalf("%s %s: recorded %v, mapped %+v", method, uri, got, m)
			}
		case r.status != http.StatusForbidden:
			rt.Fatalf("%s %s: status %d", method, uri, r.status)
		}
	})
	t.Logf("%d allowed, %d refused by the mapper", allowed, refused)
	if allowed == 0 || refused == 0 {
		t.Fatalf("the generator reached %d allows and %d refusals: both are needed", allowed, refused)
	}
}

// TestAlteredTokenRefused: a valid token with any one character of its
// header or claims changed is refused 401, unless the change only touched
// the unused low bits of a segment's last base64url character (the same
// bytes, spelt differently: the verifier checks the decoded header and
// claims, which are the signed ones).
func TestAlteredTokenRefused(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	g := k.gateway(t, gateway.PhaseProxy)
	tokens := map[string]string{}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tokens[alg] = k.sign(t, alg, clinician())
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	rapid.Check(t, func(rt *rapid.T) {
		tok := tokens[rapid.SampledFrom([]string{"RS256", "ES256", "EdDSA"}).Draw(rt, "alg")]
		signed := strings.LastIndexByte(tok, '.')
		i := rapid.IntRange(0, signed-1).Draw(rt, "at")
		ch := alphabet[rapid.IntRange(0, len(alphabet)-1).Draw(rt, "char")]
		if tok[i] == ch {
			return
		}
		bad := tok[:i] + string(ch) + tok[i+1:]
		_, err := g.Map(context.Background(), "GET", "/fhir/Observation/x1", http.Header{"Authorization": {"Bearer " + bad}})
		var ref *gateway.Refusal
		if errors.As(err, &ref) && ref.Status == http.StatusUnauthorized {
			return
		}
		if !sameBytes(tok[:signed], bad[:signed]) {
			rt.Fatalf("altered token at %d accepted: %v", i, err)
		}
	})
}

// sameBytes says whether two header.payload strings decode to the same
// bytes.
func sameBytes(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		x, err1 := base64.RawURLEncoding.DecodeString(as[i])
		y, err2 := base64.RawURLEncoding.DecodeString(bs[i])
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}
