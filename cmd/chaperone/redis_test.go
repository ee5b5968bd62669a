package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/fhirconsent"
	"github.com/chaperone-pdp/chaperone/keyset"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

func TestNewRedisClient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, url string
		want      string // client type
	}{
		{"standalone", "redis://127.0.0.1:6379/0", "*redis.Client"},
		{"tls", "rediss://user:pw@redis.example:6380/1", "*redis.Client"},
		{"sentinel", "redis+sentinel://s1:26379/0?master_name=mymaster&addr=s2:26379", "*redis.Client"},
		{"cluster", "redis+cluster://n1:6379?addr=n2:6379&addr=n3:6379", "*redis.ClusterClient"},
		{"bad scheme", "http://x", ""},
		{"bad mode", "redis+ring://x", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := newRedisClient(tc.url, time.Second)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted %s", tc.url)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var got string
			switch c.(type) {
			case *redis.Client:
				got = "*redis.Client"
			case *redis.ClusterClient:
				got = "*redis.ClusterClient"
			}
			if got != tc.want {
				t.Errorf("client %T, want %s", c, tc.want)
			}
		})
	}
}

// TestEncryptionKey: a key file of one key holds 32 bytes in standard
// base64 and nothing else is accepted (it used to guess hex, base64 or raw
// bytes); it is a key set of one.
func TestEncryptionKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := []byte("an AES-256 key of 32 raw bytes!!")
	b64 := base64.StdEncoding.EncodeToString(raw)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name, content string
		ok            bool
	}{
		{"base64", b64, true},
		{"base64 with a newline", b64 + "\n", true},
		{"raw 32 bytes", string(raw), false},
		{"hex of 32 bytes", hex.EncodeToString(raw), false},
		{"hex of 16 bytes (32 characters)", hex.EncodeToString(raw[:16]), false},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"base64 of 24 bytes", base64.StdEncoding.EncodeToString(raw[:24]), false},
		{"unpadded base64", base64.RawStdEncoding.EncodeToString(raw[:31]), false},
		{"url base64", base64.URLEncoding.EncodeToString([]byte("\xff\xfe\xfd 32 bytes of key material ...")), false},
		{"empty", "", false},
	} {
		k, err := primaryKey(loadKeySet(write(tc.name, tc.content), noEnv))
		if tc.ok {
			if err != nil || string(k) != string(raw) {
				t.Errorf("%s: %q %v", tc.name, k, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted (%d bytes)", tc.name, len(k))
		} else if strings.Contains(err.Error(), tc.content) && tc.content != "" {
			t.Errorf("%s: the error shows the key: %v", tc.name, err)
		}
	}
	k, err := primaryKey(loadKeySet("", func(string) string { return b64 }))
	if err != nil || string(k) != string(raw) {
		t.Errorf("env key: %q %v", k, err)
	}
	if _, err := loadKeySet("", func(string) string { return hex.EncodeToString(raw) }); err == nil {
		t.Error("env key in hex accepted")
	}
	if k, err := loadKeySet("", noEnv); k != nil || err != nil {
		t.Errorf("no key: %q %v", k, err)
	}
}

// TestOpenRedis wires serve's stores on a real Redis: a consent written
// through the store decides the next Check; an unreachable Redis is an
// error at start.
func TestOpenRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	flags := redisFlags{url: "redis://" + srv.Addr() + "/0", timeout: time.Second, cacheSize: 10, cacheTTL: time.Minute}
	home := t.TempDir()
	getenv := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	st, closeRedis, _, err := openRedis(ctx, flags, getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAppWith("", stores{consents: st, grants: st, agreements: st, close: closeRedis}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close(ctx)
	if len(a.serverOptions()) < 3 {
		t.Error("services not mounted")
	}
	c, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/52"},"provision":{"type":"deny"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.consents.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	resp := a.engine.Check(ctx, &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:  "read",
		// A sensitive resource: an opt-out closes it even inside the
		// organization (non-sensitive own-organization care proceeds).
		Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1",
			SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "SUD"}}}, PurposeOfUse: "TREAT",
	})
	if resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || len(resp.GetConsents()) != 1 {
		t.Errorf("check with a deny consent in redis: %v", resp)
	}
	srv.Kill()
	if _, _, _, err := openRedis(ctx, flags, getenv, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("openRedis succeeded with redis down")
	}
}

func primaryKey(ks *keyset.Set, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	_, k := ks.Primary()
	return k, nil
}
