package callers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/access/revocationtest"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// configuredVerifier is a verifier of site's keys with cfg (issuer and
// audience filled in).
func configuredVerifier(t *testing.T, site *issuerSite, cfg callers.JWTConfig) *callers.JWTVerifier {
	t.Helper()
	keys, err := callers.NewJWKS(t.Context(), jwksURL, callers.JWKSConfig{Client: &http.Client{Transport: site}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close(context.Background()) })
	cfg.Issuer, cfg.Audience = issuer, []string{audience}
	v, err := callers.NewJWTVerifier(keys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func withJTI(jti string) func(*jwt.Builder) *jwt.Builder {
	return func(b *jwt.Builder) *jwt.Builder { return b.JwtID(jti) }
}

// TestVerifyRevoked: a token verified (and cached) before its revocation
// is refused after it, by jti or by hash; other tokens are not.
func TestVerifyRevoked(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	tests := []struct {
		name   string
		jti    string // of the token
		revoke func(tok string) access.Revocation
	}{
		{name: "by jti", jti: "tok-1", revoke: func(string) access.Revocation { return access.Revocation{JTI: "tok-1"} }},
		{name: "by hash, token without jti", revoke: func(tok string) access.Revocation {
			return access.Revocation{TokenSHA256: access.TokenSHA256(tok)}
		}},
		{name: "by hash, token with a jti", jti: "tok-2", revoke: func(tok string) access.Revocation {
			return access.Revocation{TokenSHA256: access.TokenSHA256(tok)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			list := access.NewMemory()
			v := configuredVerifier(t, site, callers.JWTConfig{Revocations: list})
			var edit func(*jwt.Builder) *jwt.Builder
			if tt.jti != "" {
				edit = withJTI(tt.jti)
			}
			tok, other := k.token(t, "alice", edit, nil), k.token(t, "bob", withJTI("tok-other"), nil)
			c, err := v.Verify(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.JTI != tt.jti {
				t.Errorf("JTI = %q, want %q", c.JTI, tt.jti)
			}
			r := tt.revoke(tok)
			r.Until = time.Now().Add(time.Hour)
			if _, err := list.RevokeToken(ctx, r); err != nil {
				t.Fatal(err)
			}
			// Cached: the verified-token cache does not bypass the list.
			if got := reason(mustFail(v.Verify(ctx, tok))); got != callers.ReasonRevoked {
				t.Errorf("revoked token: %q, want %q", got, callers.ReasonRevoked)
			}
			if _, err := v.Verify(ctx, other); err != nil {
				t.Errorf("another token: %v", err)
			}
		})
	}
}

func TestVerifyRequireJTI(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	v := configuredVerifier(t, site, callers.JWTConfig{RequireJTI: true})
	if got := reason(mustFail(v.Verify(t.Context(), k.token(t, "alice", nil, nil)))); got != callers.ReasonMissingClaim {
		t.Errorf("token without jti: %q, want %q", got, callers.ReasonMissingClaim)
	}
	if _, err := v.Verify(t.Context(), k.token(t, "alice", withJTI("j1"), nil)); err != nil {
		t.Errorf("token with a jti: %v", err)
	}
	lax := configuredVerifier(t, site, callers.JWTConfig{})
	if _, err := lax.Verify(t.Context(), k.token(t, "alice", nil, nil)); err != nil {
		t.Errorf("without RequireJTI, a token without jti: %v", err)
	}
}

// TestVerifyRevocationUnavailable: with the Redis revocation list down, a
// token, cached or not, is refused: its state is unknown.
func TestVerifyRevocationUnavailable(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	store, err := consentstore.NewRedis(client, consentstore.WithRedisTimeout(100*time.Millisecond), consentstore.WithPingInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	v := configuredVerifier(t, site, callers.JWTConfig{Revocations: store})
	tok := k.token(t, "alice", withJTI("j1"), nil)
	ctx := t.Context()
	deadline := time.Now().Add(5 * time.Second)
	for !store.Stats().Subscribed && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	for store.Stats().Subscribed && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for _, raw := range []string{tok, k.token(t, "bob", withJTI("j2"), nil)} {
		if got := reason(mustFail(v.Verify(ctx, raw))); got != callers.ReasonRevocationUnavailable {
			t.Errorf("Redis down: %q, want %q", got, callers.ReasonRevocationUnavailable)
		}
	}
}

// introspectionServer is an RFC 7662 endpoint on a loopback port: it
// answers with answer(token) and counts requests.
type introspectionServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	answer   func(w http.ResponseWriter, token string)
}

func newIntrospectionServer(t *testing.T, answer func(w http.ResponseWriter, token string)) *introspectionServer {
	t.Helper()
	s := &introspectionServer{answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "chaperone" || secret != "s3cret" || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.answer(w, r.PostForm.Get("token"))
	}))
	t.Cleanup(s.Close)
	return s
}

func jsonAnswer(v any) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(v)
	}
}

func newIntrospector(t *testing.T, url string, ttl time.Duration, now func() time.Time) *callers.Introspector {
	t.Helper()
	in, err := callers.NewIntrospector(callers.IntrospectionConfig{URL: url, ClientID: "chaperone", ClientSecret: "s3cret", CacheTTL: ttl, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	raw := func(w http.ResponseWriter, ct, body string) {
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write([]byte(body))
	}
	tests := []struct {
		name   string
		answer func(http.ResponseWriter, string)
		secret string // "" means the right one
		want   string // refusal reason; "" accepted
	}{
		{name: "active", answer: jsonAnswer(map[string]any{"active": true, "sub": "alice"})},
		{name: "inactive", answer: jsonAnswer(map[string]any{"active": false}), want: callers.ReasonInactive},
		{name: "no active member", answer: jsonAnswer(map[string]any{"sub": "alice"}), want: callers.ReasonIntrospectionUnavailable},
		{name: "active as a string", answer: jsonAnswer(map[string]any{"active": "true"}), want: callers.ReasonIntrospectionUnavailable},
		{name: "not JSON", answer: func(w http.ResponseWriter, _ string) { raw(w, "application/json", "<html>ok</html>") }, want: callers.ReasonIntrospectionUnavailable},
		{name: "trailing data", answer: func(w http.ResponseWriter, _ string) { raw(w, "application/json", `{"active":true} {"active":true}`) }, want: callers.ReasonIntrospectionUnavailable},
		{name: "HTML content type", answer: func(w http.ResponseWriter, _ string) { raw(w, "text/html", `{"active":true}`) }, want: callers.ReasonIntrospectionUnavailable},
		{name: "server error", answer: func(w http.ResponseWriter, _ string) { w.WriteHeader(http.StatusInternalServerError) }, want: callers.ReasonIntrospectionUnavailable},
		{name: "wrong client secret", answer: jsonAnswer(map[string]any{"active": true}), secret: "wrong", want: callers.ReasonIntrospectionUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newIntrospectionServer(t, tt.answer)
			secret := tt.secret
			if secret == "" {
				secret = "s3cret"
			}
			in, err := callers.NewIntrospector(callers.IntrospectionConfig{URL: srv.URL, ClientID: "chaperone", ClientSecret: secret})
			if err != nil {
				t.Fatal(err)
			}
			v := configuredVerifier(t, site, callers.JWTConfig{Introspection: in})
			_, err = v.Verify(t.Context(), k.token(t, "alice", nil, nil))
			if got := reason(err); got != tt.want {
				t.Errorf("Verify: %q, want %q", got, tt.want)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("%d introspection requests, want 1", n)
			}
		})
	}
}

// TestIntrospectionDown: an endpoint that does not answer refuses the
// token, cached by the verifier or not, and failures are not cached.
func TestIntrospectionDown(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	srv := newIntrospectionServer(t, jsonAnswer(map[string]any{"active": true}))
	clock := revocationtest.NewClock(time.Now())
	in := newIntrospector(t, srv.URL, 30*time.Second, clock.Now)
	v := configuredVerifier(t, site, callers.JWTConfig{Introspection: in, Now: clock.Now})
	tok := k.token(t, "alice", nil, nil)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	clock.Advance(31 * time.Second) // past the introspection cache
	for range 2 {
		if got := reason(mustFail(v.Verify(t.Context(), tok))); got != callers.ReasonIntrospectionUnavailable {
			t.Errorf("endpoint down: %q, want %q", got, callers.ReasonIntrospectionUnavailable)
		}
	}
}

// TestIntrospectionCache: an answer is reused for at most the cache
// duration and never past the token's exp; a token revoked at the issuer
// is refused once the cached answer ends.
func TestIntrospectionCache(t *testing.T) {
	t.Parallel()
	var active atomic.Bool
	active.Store(true)
	srv := newIntrospectionServer(t, func(w http.ResponseWriter, tok string) {
		jsonAnswer(map[string]any{"active": active.Load()})(w, tok)
	})
	start := time.Now()
	tests := []struct {
		name    string
		ttl     time.Duration
		exp     time.Time
		reuse   time.Duration // still cached just before this
		refresh time.Duration // asked again at this
	}{
		{name: "bounded by the cache duration", ttl: 30 * time.Second, exp: start.Add(time.Hour), reuse: 30 * time.Second, refresh: 30 * time.Second},
		{name: "bounded by the token's exp", ttl: 30 * time.Second, exp: start.Add(10 * time.Second), reuse: 10 * time.Second, refresh: 10 * time.Second},
		{name: "a short cache", ttl: time.Second, exp: start.Add(time.Hour), reuse: time.Second, refresh: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the subtests share the endpoint's counter.
			clock := revocationtest.NewClock(start)
			in := newIntrospector(t, srv.URL, tt.ttl, clock.Now)
			tok := "header." + tt.name + ".sig"
			before := srv.requests.Load()
			if err := in.Check(t.Context(), tok, "", tt.exp); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.reuse - time.Millisecond)
			if err := in.Check(t.Context(), tok, "", tt.exp); err != nil {
				t.Fatal(err)
			}
			if n := srv.requests.Load() - before; n != 1 {
				t.Fatalf("%d requests within the cache bound, want 1", n)
			}
			clock.Advance(tt.refresh - tt.reuse + time.Millisecond)
			active.Store(false)
			defer active.Store(true)
			if got := reason(in.Check(t.Context(), tok, "", tt.exp)); got != callers.ReasonInactive {
				t.Errorf("after the bound, revoked at the issuer: %q, want %q", got, callers.ReasonInactive)
			}
			if n := srv.requests.Load() - before; n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
		})
	}
}

func TestNewIntrospector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  callers.IntrospectionConfig
		ok   bool
	}{
		{name: "https", cfg: callers.IntrospectionConfig{URL: "https://idp.example/introspect", ClientID: "c", ClientSecret: "s"}, ok: true},
		{name: "loopback http", cfg: callers.IntrospectionConfig{URL: "http://127.0.0.1:9/introspect", ClientID: "c", ClientSecret: "s"}, ok: true},
		{name: "remote http", cfg: callers.IntrospectionConfig{URL: "http://idp.example/introspect", ClientID: "c", ClientSecret: "s"}},
		{name: "no secret", cfg: callers.IntrospectionConfig{URL: "https://idp.example/introspect", ClientID: "c"}},
		{name: "no client id", cfg: callers.IntrospectionConfig{URL: "https://idp.example/introspect", ClientSecret: "s"}},
		{name: "user in URL", cfg: callers.IntrospectionConfig{URL: "https://u:p@idp.example/introspect", ClientID: "c", ClientSecret: "s"}},
		{name: "not a URL", cfg: callers.IntrospectionConfig{URL: "idp.example", ClientID: "c", ClientSecret: "s"}},
		{name: "negative cache", cfg: callers.IntrospectionConfig{URL: "https://idp.example/introspect", ClientID: "c", ClientSecret: "s", CacheTTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := callers.NewIntrospector(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("NewIntrospector: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestIntrospectionBackoff: after two failed asks in a row, tokens without
// a cached answer are refused at once for a second (the endpoint is not
// asked), then asked again; a success resets the count.
func TestIntrospectionBackoff(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	srv := newIntrospectionServer(t, func(w http.ResponseWriter, tok string) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		jsonAnswer(map[string]any{"active": true})(w, tok)
	})
	clock := revocationtest.NewClock(time.Now())
	in := newIntrospector(t, srv.URL, 30*time.Second, clock.Now)
	exp := clock.Now().Add(time.Hour)
	ask := func(tok string) string { return reason(in.Check(t.Context(), tok, "", exp)) }
	for i, tok := range []string{"t1", "t2", "t3", "t4"} {
		if got := ask(tok); got != callers.ReasonIntrospectionUnavailable {
			t.Fatalf("ask %d while failing: %q", i, got)
		}
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d requests for 4 asks, want 2 (then backing off)", n)
	}
	failing.Store(false)
	if got := ask("t5"); got != callers.ReasonIntrospectionUnavailable {
		t.Errorf("within the backoff: %q", got)
	}
	clock.Advance(time.Second)
	if got := ask("t5"); got != "" {
		t.Errorf("after the backoff, endpoint back: %q", got)
	}
	if n := srv.requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}
