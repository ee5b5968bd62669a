package proxy_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/chaperone-pdp/chaperone/proxy"
)

func doc(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestApplyPatch holds the RFC 6902 operations the proxy applies to
// decide a patched resource.
func TestApplyPatch(t *testing.T) {
	t.Parallel()
	base := `{"resourceType":"Observation","id":"o","a":[1,2,3],"b":{"c":"d"},"x~y/z":1}`
	tests := []struct {
		name, patch, want string
	}{
		{"add member", `[{"op":"add","path":"/e","value":{"f":1}}]`, `{"resourceType":"Observation","id":"o","a":[1,2,3],"b":{"c":"d"},"x~y/z":1,"e":{"f":1}}`},
		{"add into array", `[{"op":"add","path":"/a/1","value":9}]`, `{"resourceType":"Observation","id":"o","a":[1,9,2,3],"b":{"c":"d"},"x~y/z":1}`},
		{"append", `[{"op":"add","path":"/a/-","value":4}]`, `{"resourceType":"Observation","id":"o","a":[1,2,3,4],"b":{"c":"d"},"x~y/z":1}`},
		{"remove from array", `[{"op":"remove","path":"/a/0"}]`, `{"resourceType":"Observation","id":"o","a":[2,3],"b":{"c":"d"},"x~y/z":1}`},
		{"replace nested", `[{"op":"replace","path":"/b/c","value":"e"}]`, `{"resourceType":"Observation","id":"o","a":[1,2,3],"b":{"c":"e"},"x~y/z":1}`},
		{"escaped name", `[{"op":"remove","path":"/x~0y~1z"}]`, `{"resourceType":"Observation","id":"o","a":[1,2,3],"b":{"c":"d"}}`},
		{"move", `[{"op":"move","from":"/b","path":"/a/0"}]`, `{"resourceType":"Observation","id":"o","a":[{"c":"d"},1,2,3],"x~y/z":1}`},
		{"copy and test", `[{"op":"copy","from":"/a","path":"/b/a"},{"op":"test","path":"/b/a/2","value":3}]`, `{"resourceType":"Observation","id":"o","a":[1,2,3],"b":{"c":"d","a":[1,2,3]},"x~y/z":1}`},
	}
	for _, tc := range tests {
		got, err := proxy.ApplyPatch(doc(t, base), []byte(tc.patch))
		if err != nil || !reflect.DeepEqual(normalize(t, got), doc(t, tc.want)) {
			t.Errorf("%s: %v %v, want %s", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		`[]`, `{}`, `[{"op":"nope","path":"/a"}]`, `[{"op":"remove","path":"/missing"}]`, `[{"op":"replace","path":"/missing","value":1}]`,
		`[{"op":"add","path":"/a/7","value":1}]`, `[{"op":"add","path":"/a/01","value":1}]`, `[{"op":"add","path":"a","value":1}]`,
		`[{"op":"test","path":"/a/0","value":2}]`, `[{"op":"move","from":"/b","path":"/b/c"}]`, `[{"op":"add","path":"/e"}]`,
		`[{"op":"add","path":"","value":[1]}]`,
	} {
		if _, err := proxy.ApplyPatch(doc(t, base), []byte(bad)); err == nil {
			t.Errorf("%s applied", bad)
		}
	}
}

func normalize(t testing.TB, v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return doc(t, string(b))
}

// FuzzApplyPatch: any patch on any document applies or fails, never
// panics, and never yields a non-object.
func FuzzApplyPatch(f *testing.F) {
	f.Add(`{"a":[1,{"b":2}]}`, `[{"op":"add","path":"/a/1/c","value":3}]`)
	f.Add(`{"a":[1]}`, `[{"op":"move","from":"/a/0","path":"/a/-"}]`)
	f.Add(`{"a":{}}`, `[{"op":"copy","from":"/a","path":"/a/b"}]`)
	f.Fuzz(func(t *testing.T, d, p string) {
		var m map[string]any
		if json.Unmarshal([]byte(d), &m) != nil || m == nil {
			return
		}
		out, err := proxy.ApplyPatch(m, []byte(p))
		if err == nil && out == nil {
			t.Fatal("nil result without error")
		}
	})
}
