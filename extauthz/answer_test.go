package extauthz_test

import (
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/extauthz"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// odd strings: JSON escapes, control bytes, non-ASCII, invalid UTF-8.
var oddStrings = []string{"", "a", "Observation.note", `q"uote`, `back\slash`, "tab\t", "nl\n\r", "\x00\x1f\x7f", "é✓", "\u2028", "<&>", "\xff", "bad\xc3"}

func genString(t *rapid.T, label string) string {
	return rapid.OneOf(rapid.SampledFrom(oddStrings), rapid.String()).Draw(t, label)
}

// The hand-written obligations JSON is read back by protojson as the
// message it was written from, and fails exactly where protojson fails.
func TestObligationsJSONMatchesProtojson(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		o := &chaperonev1.Obligations{PerEntryCheck: rapid.Bool().Draw(t, "pec")}
		for range rapid.IntRange(0, 3).Draw(t, "masks") {
			o.MaskPaths = append(o.MaskPaths, genString(t, "mask"))
		}
		for range rapid.IntRange(0, 3).Draw(t, "labels") {
			o.RedactLabels = append(o.RedactLabels, &chaperonev1.Coding{System: genString(t, "system"), Code: genString(t, "code")})
		}
		for range rapid.IntRange(0, 3).Draw(t, "tags") {
			o.AuditTags = append(o.AuditTags, genString(t, "tag"))
		}
		got, ok := extauthz.ObligationsJSON(nil, o)
		_, perr := protojson.Marshal(o)
		if ok != (perr == nil) {
			t.Fatalf("hand ok %v, protojson error %v", ok, perr)
		}
		if !ok {
			return
		}
		back := &chaperonev1.Obligations{}
		if err := protojson.Unmarshal(got, back); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if !proto.Equal(back, o) {
			t.Fatalf("%s read back as %v, want %v", got, back, o)
		}
	})
}

// headers builds what http.Header.Add of every header builds.
func TestHeadersMatchAdd(t *testing.T) {
	t.Parallel()
	names := []string{"authorization", "Authorization", "x-purpose-of-use", "user-agent", "accept", ":path", ":authority",
		"x-envoy-auth-partial-body", "content-type", "weird name", "x_under", "X-HTTP-METHOD", "x-http-method-override", "ünï", ""}
	rapid.Check(t, func(t *rapid.T) {
		hr := &authv3.AttributeContext_HttpRequest{}
		for range rapid.IntRange(0, 6).Draw(t, "n") {
			if hr.Headers == nil {
				hr.Headers = map[string]string{}
			}
			hr.Headers[rapid.OneOf(rapid.SampledFrom(names), rapid.String()).Draw(t, "k")] = rapid.String().Draw(t, "v")
		}
		if rapid.Bool().Draw(t, "map") {
			hr.HeaderMap = &corev3.HeaderMap{}
			for range rapid.IntRange(0, 6).Draw(t, "m") {
				hv := &corev3.HeaderValue{Key: rapid.OneOf(rapid.SampledFrom(names), rapid.String()).Draw(t, "mk"), Value: rapid.String().Draw(t, "mv")}
				if rapid.Bool().Draw(t, "raw") {
					hv.RawValue = []byte(rapid.String().Draw(t, "raw"))
				}
				hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, hv)
			}
		}
		want := http.Header{}
		for k, v := range hr.GetHeaders() {
			if !strings.HasPrefix(k, ":") {
				want.Add(k, v)
			}
		}
		for _, hv := range hr.GetHeaderMap().GetHeaders() {
			if strings.HasPrefix(hv.GetKey(), ":") {
				continue
			}
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			want.Add(hv.GetKey(), v)
		}
		got := extauthz.Headers(hr)
		// Map order of hr.Headers varies between the two walks; the
		// header map's keys are distinct, so only the mixed case of a
		// name in both differs in order: compare as sets per name.
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for k, vs := range want {
			if !sameValues(got[k], vs) {
				t.Fatalf("%q: got %q, want %q", k, got[k], vs)
			}
		}
	})
}

func sameValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, v := range a {
		count[v]++
	}
	for _, v := range b {
		count[v]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestCanonicalKey(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		k := rapid.OneOf(rapid.SampledFrom([]string{"authorization", "x-purpose-of-use", "te", "x-chaperone-obligations", "Accept", "a b"}), rapid.String()).Draw(t, "k")
		if got, want := extauthz.CanonicalKey(k), http.CanonicalHeaderKey(k); got != want {
			t.Fatalf("CanonicalKey(%q) = %q, want %q", k, got, want)
		}
	})
}
