package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/gateway"
)

// TestIntrospection: with tokens.introspection the door asks the issuer's
// RFC 7662 endpoint (a real loopback server) about each end user's token,
// with its client credentials: active → mapped, inactive → 401, endpoint
// down → 401 (fail closed); an answer is reused for the next request.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	active, inactive := k.sign(t, "ES256", clinician()), k.sign(t, "ES256", clinician())
	var asked atomic.Int64
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if id, secret, ok := r.BasicAuth(); !ok || id != "door" || secret != "s3cret" || r.ParseForm() != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"active": r.PostForm.Get("token") == active})
	}))
	t.Cleanup(idp.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "gateway.yaml")
	conf := strings.Replace(k.config(gateway.PhaseProxy), "  audience: "+testAudience+"\n",
		"  audience: "+testAudience+"\n  introspection:\n    url: "+idp.URL+"\n    clientId: door\n    clientSecretFile: secret\n    cache: 10s\n", 1)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	mapWith := func(tok string) error {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+tok)
		_, err := g.Map(context.Background(), "GET", "/fhir/Observation/x1", h)
		return err
	}
	detail := func(err error) string {
		var ref *gateway.Refusal
		if !errors.As(err, &ref) || ref.Status != http.StatusUnauthorized {
			return "not a 401: " + errorString(err)
		}
		return ref.Detail
	}
	if err := mapWith(active); err != nil {
		t.Fatalf("active token: %v", err)
	}
	if err := mapWith(active); err != nil || asked.Load() != 1 {
		t.Fatalf("active token again: %v, %d introspection requests, want 1", err, asked.Load())
	}
	if got := detail(mapWith(inactive)); got != callers.ReasonInactive {
		t.Errorf("inactive token: %q, want %q", got, callers.ReasonInactive)
	}
	idp.Close()
	if got := detail(mapWith(k.sign(t, "EdDSA", clinician()))); got != callers.ReasonIntrospectionUnavailable {
		t.Errorf("endpoint down: %q, want %q", got, callers.ReasonIntrospectionUnavailable)
	}
}

func errorString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestIntrospectionConfig(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	tests := []struct {
		name, block, want string
	}{
		{"no url", "    clientId: c\n    clientSecretFile: s\n", "tokens.introspection.url is required"},
		{"no client id", "    url: https://idp.test/introspect\n    clientSecretFile: s\n", "tokens.introspection.clientId is required"},
		{"no secret", "    url: https://idp.test/introspect\n    clientId: c\n", "tokens.introspection.clientSecretFile is required"},
		{"bad cache", "    url: https://idp.test/introspect\n    clientId: c\n    clientSecretFile: s\n    cache: soon\n", "tokens.introspection.cache"},
		{"unknown key", "    url: https://idp.test/introspect\n    clientId: c\n    clientSecretFile: s\n    secret: x\n", "field secret not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conf := strings.Replace(k.config(gateway.PhaseProxy), "  audience: "+testAudience+"\n", "  audience: "+testAudience+"\n  introspection:\n"+tt.block, 1)
			_, err := gateway.Parse([]byte(conf))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse: %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
