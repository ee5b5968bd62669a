package callers_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/chaperone-pdp/chaperone/callers"
)

const (
	issuer   = "https://idp.chaperone.test"
	audience = "chaperone"
	jwksURL  = "https://idp.chaperone.test/jwks.json"
)

// key is an issuer's Ed25519 signing key.
type key struct {
	priv, pub jwk.Key
}

func newKey(t testing.TB, kid string) *key {
	t.Helper()
	_, raw, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, kid)
	_ = priv.Set(jwk.AlgorithmKey, jwa.EdDSA())
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &key{priv: priv, pub: pub}
}

// token signs claims (iat now, exp in an hour, unless set) with extra
// protected headers.
func (k *key) token(t testing.TB, sub string, edit func(*jwt.Builder) *jwt.Builder, hdr map[string]any) string {
	t.Helper()
	now := time.Now()
	b := jwt.NewBuilder().Subject(sub).Issuer(issuer).Audience([]string{audience}).IssuedAt(now).Expiration(now.Add(time.Hour))
	if edit != nil {
		b = edit(b)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	for n, v := range hdr {
		_ = h.Set(n, v)
	}
	out, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), k.priv, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// issuerSite publishes a key set in process (no network, so the tests run
// in a synctest bubble) and counts fetches.
type issuerSite struct {
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func (s *issuerSite) publish(t testing.TB, keys ...*key) {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k.pub); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.body.Store(&b)
}

func (s *issuerSite) RoundTrip(r *http.Request) (*http.Response, error) {
	s.fetches.Add(1)
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "application/jwk-set+json")
	rec.Write(*s.body.Load())
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

func newVerifier(t *testing.T, site *issuerSite, cfg callers.JWKSConfig) (*callers.JWTVerifier, *callers.JWKS) {
	t.Helper()
	cfg.Client = &http.Client{Transport: site}
	keys, err := callers.NewJWKS(t.Context(), jwksURL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close(context.Background()) })
	v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: issuer, Audience: []string{audience}})
	if err != nil {
		t.Fatal(err)
	}
	return v, keys
}

func reason(err error) string {
	var te *callers.TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	if err == nil {
		return ""
	}
	return "not a TokenError: " + err.Error()
}

func TestJWKSKeyRotation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const minRefresh, maxAge = time.Minute, 10 * time.Minute
		k1, k2, k3 := newKey(t, "k1"), newKey(t, "k2"), newKey(t, "k3")
		site := &issuerSite{}
		site.publish(t, k1)
		v, _ := newVerifier(t, site, callers.JWKSConfig{MinRefresh: minRefresh, MaxAge: maxAge})
		synctest.Wait()
		ctx := t.Context()
		tok1, tok2 := k1.token(t, "a", nil, nil), k2.token(t, "b", nil, nil)

		if _, err := v.Verify(ctx, tok1); err != nil {
			t.Fatalf("k1 before rotation: %v", err)
		}
		fetches := site.fetches.Load()
		if r := reason(mustFail(v.Verify(ctx, tok2))); r != callers.ReasonUnknownKey {
			t.Fatalf("k2 before the issuer publishes it: %s", r)
		}
		if n := site.fetches.Load() - fetches; n != 0 {
			t.Errorf("an unknown kid within MinRefresh of the last fetch fetched %d times", n)
		}

		// The issuer rotates: k2 in, k1 out. Within MinRefresh the old set
		// stands; after it, the unknown kid refetches.
		site.publish(t, k2)
		if r := reason(mustFail(v.Verify(ctx, tok2))); r != callers.ReasonUnknownKey {
			t.Fatalf("k2 within MinRefresh: %s", r)
		}
		time.Sleep(minRefresh)
		c, err := v.Verify(ctx, tok2)
		if err != nil {
			t.Fatalf("k2 after rotation: %v", err)
		}
		if c.Subject != "b" {
			t.Errorf("subject %q", c.Subject)
		}
		// tok1 was verified (and cached) before; its key is gone now.
		if r := reason(mustFail(v.Verify(ctx, tok1))); r != callers.ReasonUnknownKey {
			t.Fatalf("k1 after it was rotated out: %s", r)
		}

		// The background refresh brings k3 without any unknown kid.
		site.publish(t, k3)
		time.Sleep(maxAge + 2*time.Second)
		synctest.Wait()
		fetches = site.fetches.Load()
		if _, err := v.Verify(ctx, k3.token(t, "c", nil, nil)); err != nil {
			t.Fatalf("k3 after a background refresh: %v", err)
		}
		if n := site.fetches.Load() - fetches; n != 0 {
			t.Errorf("k3 needed %d fetches; the background refresh should have brought it", n)
		}
	})
}

func mustFail[T any](_ T, err error) error { return err }

func TestJWKSRefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		site := &issuerSite{}
		site.publish(t, newKey(t, "k1"))
		v, _ := newVerifier(t, site, callers.JWKSConfig{MinRefresh: time.Hour})
		synctest.Wait()
		time.Sleep(time.Minute)
		before := site.fetches.Load()
		for i := range 20 {
			tok := newKey(t, "forged-"+string(rune('a'+i))).token(t, "x", nil, nil)
			if r := reason(mustFail(v.Verify(t.Context(), tok))); r != callers.ReasonUnknownKey {
				t.Fatalf("forged kid: %s", r)
			}
		}
		if n := site.fetches.Load() - before; n != 0 {
			t.Errorf("20 unknown kids caused %d fetches within MinRefresh, want 0", n)
		}
	})
}

func TestJWTClaims(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := newKey(t, "k1")
		site := &issuerSite{}
		site.publish(t, k)
		v, _ := newVerifier(t, site, callers.JWKSConfig{})
		now := time.Now()
		for _, tc := range []struct {
			name string
			tok  string
			want string // reason; "" accepts
		}{
			{"valid", k.token(t, "svc", nil, nil), ""},
			{"empty sub", k.token(t, "", nil, nil), callers.ReasonMissingClaim},
			{"lifetime of exactly 24h", k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder { return b.Expiration(now.Add(24 * time.Hour)) }, nil), ""},
			{"exp in 9999", k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder {
				return b.Expiration(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))
			}, nil), callers.ReasonLifetime},
			{"issued long ago, valid long", k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder {
				return b.IssuedAt(now.Add(-30 * 24 * time.Hour)).Expiration(now.Add(time.Hour))
			}, nil), callers.ReasonLifetime},
			{"no iat, exp in a year", k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder {
				return b.IssuedAt(time.Time{}).Expiration(now.Add(365 * 24 * time.Hour))
			}, nil), callers.ReasonLifetime},
			{"unknown crit header", k.token(t, "svc", nil, map[string]any{"crit": []string{"urn:x:policy"}, "urn:x:policy": true}), callers.ReasonCritical},
			{"crit b64", k.token(t, "svc", nil, map[string]any{"crit": []string{"exp"}}), callers.ReasonCritical},
		} {
			_, err := v.Verify(t.Context(), tc.tok)
			if got := reason(err); got != tc.want {
				t.Errorf("%s: reason %q, want %q (%v)", tc.name, got, tc.want, err)
			}
		}
	})
}

// TestJWTLifetimeProperty: whatever iat and exp a token carries, it is
// accepted only if it lives at most the cap.
func TestJWTLifetimeProperty(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := newKey(t, "k1")
		site := &issuerSite{}
		site.publish(t, k)
		v, _ := newVerifier(t, site, callers.JWKSConfig{})
		now := time.Now()
		for i := range 200 {
			iatAgo := time.Duration(i%20) * 3 * time.Hour
			expIn := time.Duration(i/20)*5*time.Hour + time.Minute
			tok := k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder {
				return b.IssuedAt(now.Add(-iatAgo)).Expiration(now.Add(expIn))
			}, nil)
			_, err := v.Verify(t.Context(), tok)
			life := iatAgo + expIn
			if ok := err == nil; ok != (life <= callers.DefaultMaxLifetime+30*time.Second) {
				t.Errorf("iat -%s exp +%s (lifetime %s): err %v", iatAgo, expIn, life, err)
			}
		}
	})
}

func TestJWKSFromFile(t *testing.T) {
	t.Parallel()
	k := newKey(t, "k1")
	site := &issuerSite{}
	site.publish(t, k)
	path := t.TempDir() + "/jwks.json"
	if err := writeFile(path, *site.body.Load()); err != nil {
		t.Fatal(err)
	}
	keys, err := callers.NewJWKS(t.Context(), path, callers.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close(context.Background())
	v, err := callers.NewJWTVerifier(keys, callers.JWTConfig{Issuer: issuer, Audience: []string{audience}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(t.Context(), k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder { return b.Claim("client_id", "portal") }, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "svc" || c.ClientID != "portal" {
		t.Errorf("claims %+v", c)
	}
	for _, src := range []string{"http://idp.example.com/jwks.json", t.TempDir() + "/missing.json"} {
		if k, err := callers.NewJWKS(t.Context(), src, callers.JWKSConfig{}); err == nil {
			k.Close(context.Background())
			t.Errorf("NewJWKS(%q): want an error", src)
		}
	}
	sym := t.TempDir() + "/sym.json"
	_ = writeFile(sym, []byte(`{"keys":[{"kty":"oct","kid":"s","k":"`+base64.RawURLEncoding.EncodeToString([]byte("secret"))+`"}]}`))
	if k, err := callers.NewJWKS(t.Context(), sym, callers.JWKSConfig{}); err == nil || !strings.Contains(err.Error(), "symmetric") {
		if k != nil {
			k.Close(context.Background())
		}
		t.Errorf("a JWKS with a symmetric key: %v", err)
	}
}

// TestJWTCacheHonoursExpiry: a token verified (and so cached) is refused
// ReasonExpired once its exp (plus the allowed skew) has passed, whether
// its lifetime is shorter or longer than the cache's minute, and a cached
// token keeps being accepted before that.
func TestJWTCacheHonoursExpiry(t *testing.T) {
	t.Parallel()
	for _, life := range []time.Duration{time.Second, 10 * time.Second, 59 * time.Second, 61 * time.Second, 5 * time.Minute} {
		t.Run("exp="+life.String(), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				k := newKey(t, "k1")
				site := &issuerSite{}
				site.publish(t, k)
				v, _ := newVerifier(t, site, callers.JWKSConfig{})
				start := time.Now()
				tok := k.token(t, "svc", func(b *jwt.Builder) *jwt.Builder {
					return b.IssuedAt(start).Expiration(start.Add(life))
				}, nil)
				for _, at := range []time.Duration{0, life / 2, life - 500*time.Millisecond} {
					time.Sleep(start.Add(at).Sub(time.Now()))
					if _, err := v.Verify(t.Context(), tok); err != nil {
						t.Fatalf("at +%s: %v", at, err)
					}
				}
				const skew = 30 * time.Second // the default
				time.Sleep(start.Add(life + skew + time.Second).Sub(time.Now()))
				for range 3 {
					if _, err := v.Verify(t.Context(), tok); reason(err) != callers.ReasonExpired {
						t.Fatalf("after exp: %v, want %s", err, callers.ReasonExpired)
					}
				}
			})
		})
	}
}
