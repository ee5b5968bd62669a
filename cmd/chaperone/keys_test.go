package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	"github.com/chaperone-pdp/chaperone/keyset"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestServeKeySetGenerated: without a key file, serve generates one at the
// documented path (mode 0600) and uses it again on the next start; with no
// home directory it refuses to start rather than store clear text.
func TestServeKeySetGenerated(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	env := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	first, err := serveKeySet("", env, now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, ".config", "chaperone", "encryption-keys.json")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file %s: %v %v", path, st, err)
	}
	again, err := serveKeySet("", env, now.Add(time.Hour), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, k1 := first.Primary()
	id2, k2 := again.Primary()
	if string(k1) != string(k2) || id2 != "k20261201T030000Z" {
		t.Errorf("second start did not reuse the generated key (%s)", id2)
	}
	if _, err := serveKeySet("", func(string) string { return "" }, now, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("started without a key and without a home directory")
	}
}

// TestConsentReencryptCommand rotates the key of a Redis store with the
// commands an operator runs: keys new, (records written), keys rotate,
// consent reencrypt --checkpoint, keys drop; the records stay readable with
// the new key alone, and no value in Redis holds the consent in clear text.
func TestConsentReencryptCommand(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	if code, out, stderr := runAudit(t, "keys", "new", "-o", file, "--id", "old"); code != 0 || !strings.Contains(out, "primary key old") {
		t.Fatalf("keys new: %d %s %s", code, out, stderr)
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	open := func() *consentstore.Redis {
		ks, err := keyset.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		s, err := consentstore.NewRedis(client, consentstore.WithKeySet(ks), consentstore.WithCache(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		c, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"` + id + `","status":"active","patient":{"reference":"Patient/52"},"provision":{"type":"deny"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open().Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, stderr := runAudit(t, "keys", "rotate", file, "--id", "new"); code != 0 || !strings.Contains(out, "primary new, keys new, old") {
		t.Fatalf("keys rotate: %d %s %s", code, out, stderr)
	}
	ckpt := filepath.Join(dir, "cursor")
	code, out, stderr := runAudit(t, "consent", "reencrypt", "--redis", "redis://"+addr+"/0", "--encryption-key-file", file, "--checkpoint", ckpt, "--count", "1")
	if code != 0 || !strings.Contains(out, "done: every record is sealed under key new") || !strings.Contains(stderr, "consents 3") {
		t.Fatalf("consent reencrypt: %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(ckpt); !os.IsNotExist(err) {
		t.Errorf("checkpoint left after a finished run: %v", err)
	}
	if code, _, stderr := runAudit(t, "keys", "drop", file, "old"); code != 0 {
		t.Fatalf("keys drop: %s", stderr)
	}
	if set, err := open().ForPatient(ctx, "Patient/52"); err != nil || len(set.Consents) != 3 {
		t.Errorf("read with the new key alone: %v %v", set, err)
	}
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if client.Type(ctx, k).Val() != "hash" {
			continue
		}
		for _, v := range client.HGetAll(ctx, k).Val() {
			if strings.Contains(v, "resourceType") || strings.Contains(v, "provision") {
				t.Errorf("%s holds a consent in clear text", k)
			}
		}
	}
	if code, _, _ := runAudit(t, "consent", "reencrypt", "--redis", "redis://"+addr+"/0"); code != 2 {
		t.Errorf("reencrypt without a key set: exit %d, want 2", code)
	}
}

// TestConsentPruneCommand: consent prune removes a consent revoked before
// the date, keeps the one in force, and a dry run removes nothing.
func TestConsentPruneCommand(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	s, err := consentstore.NewRedis(client, consentstore.WithCache(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, id := range []string{"c1", "c2"} {
		c, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"` + id + `","status":"active","patient":{"reference":"Patient/52"},"provision":{"type":"deny"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Revoke(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	url := "redis://" + addr + "/0"
	if code, out, stderr := runAudit(t, "consent", "prune", "--redis", url, "--before", "2000-01-01"); code != 0 || !strings.Contains(out, "removed: 0 revoked consents") {
		t.Fatalf("prune before 2000: %d %s %s", code, out, stderr)
	}
	if code, out, stderr := runAudit(t, "consent", "prune", "--redis", url, "--before", "2999-01-01", "--dry-run"); code != 0 || !strings.Contains(out, "would remove: 1 revoked consents") {
		t.Fatalf("dry run: %d %s %s", code, out, stderr)
	}
	if code, out, stderr := runAudit(t, "consent", "prune", "--redis", url, "--before", "2999-01-01"); code != 0 || !strings.Contains(out, "removed: 1 revoked consents") {
		t.Fatalf("prune: %d %s %s", code, out, stderr)
	}
	if recs, _, err := s.List(ctx, "Patient/52"); err != nil || len(recs) != 1 || recs[0].Consent.ID != "c2" {
		t.Errorf("after prune: %v %v", recs, err)
	}
	if code, _, _ := runAudit(t, "consent", "prune", "--redis", url); code != 2 {
		t.Errorf("prune without --before: exit %d", code)
	}
}

// TestServeRedisEncryptedByDefault: serve's Redis store with no key file
// given encrypts under a generated key: a dump of every value in Redis
// holds no consent in clear text.
func TestServeRedisEncryptedByDefault(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	home := t.TempDir()
	env := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	flags := redisFlags{url: "redis://" + addr + "/0", timeout: time.Second, cacheSize: 10, cacheTTL: time.Minute}
	st, closeRedis, _, err := openRedis(ctx, flags, env, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeRedis(ctx)
	c, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/52"},"provision":{"type":"deny","purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HRESCH"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	for _, k := range keys {
		switch client.Type(ctx, k).Val() {
		case "hash":
			for f, v := range client.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "string":
			dump.WriteString(client.Get(ctx, k).Val() + "\n")
		}
	}
	if !strings.Contains(dump.String(), "c1=") {
		t.Fatalf("the consent is not in the dump: %q", dump.String())
	}
	for _, clear := range []string{"resourceType", "HRESCH", "provision", "v3-ActReason"} {
		if strings.Contains(dump.String(), clear) {
			t.Errorf("the Redis dump holds %q in clear text", clear)
		}
	}
	if _, err := os.Stat(filepath.Join(home, ".config", "chaperone", "encryption-keys.json")); err != nil {
		t.Errorf("no generated key file: %v", err)
	}
}

// TestUnknownKeyDeniesConsentUnavailable: a replica whose key set does not
// hold the key a patient's consent was sealed under decides DENY
// CONSENT_UNAVAILABLE for that patient (never reads it as clear text, never
// ignores it).
func TestUnknownKeyDeniesConsentUnavailable(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	a, _ := keyset.Generate("A")
	b, _ := keyset.Generate("B")
	writer, err := consentstore.NewRedis(client, consentstore.WithKeySet(a))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	c, err := fhirconsent.Parse([]byte(`{"resourceType":"Consent","id":"c1","status":"active","patient":{"reference":"Patient/52"},"provision":{"type":"deny"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ks   *keyset.Set
		want string
	}{
		{"the key", a, ""},
		{"another key", b, "CONSENT_UNAVAILABLE"},
	} {
		st, err := consentstore.NewRedis(client, consentstore.WithKeySet(tc.ks), consentstore.WithCache(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		app, err := newAppWith("", stores{consents: st, grants: st, agreements: st, close: func(context.Context) error { return st.Close() }}, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := app.engine.Check(ctx, &chaperonev1.CheckRequest{
			Subject:  &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1"},
			Action:   "read",
			Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1"}, PurposeOfUse: "TREAT",
		})
		var codes []string
		for _, r := range resp.GetReasons() {
			codes = append(codes, r.GetCode())
		}
		got := strings.Join(codes, ",")
		switch {
		case tc.want == "" && strings.Contains(got, "CONSENT_UNAVAILABLE"):
			t.Errorf("%s: %s", tc.name, got)
		case tc.want != "" && (resp.GetDecision() != chaperonev1.Decision_DECISION_DENY || got != tc.want):
			t.Errorf("%s: %v %s, want DENY %s", tc.name, resp.GetDecision(), got, tc.want)
		}
		_ = app.close(ctx)
	}
}
