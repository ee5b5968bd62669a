package consentstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/keyset"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// dumpValues reads every value under prefix (strings and hashes, fields
// and values), what a copy of the Redis data would hold.
func dumpValues(t *testing.T, c *redis.Client, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	iter := c.Scan(ctx, 0, prefix+":*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			b.WriteString(c.Get(ctx, k).Val())
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				b.WriteString(f + "=" + v + "\n")
			}
		}
		b.WriteByte('\n')
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// rotationFixture writes two patients' consents (one revoked), a grant and
// an agreement through s.
func rotationFixture(t *testing.T, s *consentstore.Redis, tag string) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct{ id, patient string }{{tag + "a", "Patient/r1"}, {tag + "b", "Patient/r1"}, {tag + "c", "Patient/r2"}} {
		if _, err := s.Put(ctx, denyConsent(t, c.id, c.patient)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Revoke(ctx, tag+"b"); err != nil {
		t.Fatal(err)
	}
	g, err := access.NewGrant("Practitioner/"+tag, "Patient/r2", "unconscious patient in the emergency room", "Practitioner/boss", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g.ID = tag + "g"
	if _, err := s.PutGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAgreement(ctx, access.Agreement{ClientID: tag + "app", Vendor: "Secret Vendor " + tag, BAASigned: true, Purposes: []string{"TREAT"}, ResourceTypes: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
}

// readAll reads everything the fixtures of tags wrote, through s.
func readAll(s *consentstore.Redis, tags ...string) error {
	ctx := context.Background()
	for _, p := range []string{"Patient/r1", "Patient/r2"} {
		if _, err := s.ForPatient(ctx, p); err != nil {
			return err
		}
		if _, _, err := s.List(ctx, p); err != nil {
			return err
		}
	}
	for _, tag := range tags {
		if rec, err := s.Get(ctx, tag+"b"); err != nil || !rec.Revoked {
			return errors.Join(err, errors.New("revoked consent not read as revoked"))
		}
		if gs, err := s.ListGrants(ctx, "Practitioner/"+tag, ""); err != nil || len(gs) != 1 || gs[0].Reason != "unconscious patient in the emergency room" {
			return errors.Join(err, errors.New("grant not read back"))
		}
		if a, err := s.GetAgreement(ctx, tag+"app"); err != nil || a.Vendor != "Secret Vendor "+tag {
			return errors.Join(err, errors.New("agreement not read back"))
		}
	}
	return nil
}

func reencrypt(t *testing.T, s *consentstore.Redis) consentstore.ReencryptProgress {
	t.Helper()
	p, err := s.Reencrypt(context.Background(), "", 2, func(consentstore.ReencryptProgress) error { return nil })
	if err != nil || !p.Done {
		t.Fatalf("reencrypt: %+v %v", p, err)
	}
	return p
}

// TestRedisKeyRotation rotates A → A+B → B on a real redis-server and reads
// every consent, grant and agreement at each step; a store without the key
// a record names fails closed, and nothing is stored in clear text.
func TestRedisKeyRotation(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	ctx := context.Background()
	a, err := keyset.Generate("A")
	if err != nil {
		t.Fatal(err)
	}
	ab, err := a.Rotate("B")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ab.Drop("A")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "rot"
	noCache := consentstore.WithCache(0, 0)
	sA := newRedis(t, client, prefix, consentstore.WithKeySet(a), noCache)
	sAB := newRedis(t, client, prefix, consentstore.WithKeySet(ab), noCache)
	sB := newRedis(t, client, prefix, consentstore.WithKeySet(b), noCache)

	// Step 1: A alone.
	rotationFixture(t, sA, "x")
	if err := readAll(sA, "x"); err != nil {
		t.Fatalf("A reads A: %v", err)
	}
	dump := dumpValues(t, client, prefix)
	for _, clear := range []string{"resourceType", "Organization/o1", "emergency room", "Secret Vendor", "baaSigned"} {
		if strings.Contains(dump, clear) {
			t.Errorf("the Redis data holds %q in clear text", clear)
		}
	}
	if err := readAll(sB, "x"); !errors.Is(err, consentstore.ErrSealed) || !errors.Is(err, keyset.ErrUnknownKey) {
		t.Errorf("B alone read records under A: %v, want ErrSealed (unknown key)", err)
	}

	// Step 2: A+B, primary B: reads A's records, writes under B.
	if err := readAll(sAB, "x"); err != nil {
		t.Fatalf("A+B reads A: %v", err)
	}
	rotationFixture(t, sAB, "y")
	if err := readAll(sAB, "x", "y"); err != nil {
		t.Fatalf("A+B reads A and B: %v", err)
	}
	if _, err := sA.ForPatient(ctx, "Patient/r1"); !errors.Is(err, consentstore.ErrSealed) {
		t.Errorf("A alone read a record under B: %v", err)
	}

	// Reencrypt, resumably: stop after the first step, resume from its cursor.
	stop := errors.New("stop")
	first, err := sAB.Reencrypt(ctx, "", 1, func(p consentstore.ReencryptProgress) error {
		if p.Cursor == "" {
			t.Errorf("progress without a cursor: %+v", p)
		}
		return stop
	})
	if !errors.Is(err, stop) || first.Done {
		t.Fatalf("interrupted reencrypt: %+v %v", first, err)
	}
	steps := 0
	rest, err := sAB.Reencrypt(ctx, first.Cursor, 1, func(consentstore.ReencryptProgress) error { steps++; return nil })
	if err != nil || !rest.Done {
		t.Fatalf("resumed reencrypt: %+v %v", rest, err)
	}
	// x wrote 3 consents, 1 grant, 1 agreement under A.
	if got := first.Consents + rest.Consents; got != 3 {
		t.Errorf("consents rewritten %d, want 3 (%+v, %+v)", got, first, rest)
	}
	if got := first.Grants + rest.Grants; got != 1 {
		t.Errorf("grants rewritten %d, want 1", got)
	}
	if got := first.Agreements + rest.Agreements; got != 1 {
		t.Errorf("agreements rewritten %d, want 1", got)
	}
	if again := reencrypt(t, sAB); again.Consents+again.Grants+again.Agreements != 0 || again.Current != 10 {
		t.Errorf("a second run rewrote records: %+v", again)
	}

	// Step 3: B alone reads everything; A alone reads nothing.
	if err := readAll(sB, "x", "y"); err != nil {
		t.Fatalf("B reads everything after reencrypt: %v", err)
	}
	if err := readAll(sA, "x"); !errors.Is(err, consentstore.ErrSealed) {
		t.Errorf("A still reads after reencrypt: %v", err)
	}
	if _, err := sB.RevokeGrant(ctx, "yg"); err != nil {
		t.Fatalf("revoke a sealed grant: %v", err)
	}
	if gs, err := sB.ListGrants(ctx, "Practitioner/y", ""); err != nil || len(gs) != 1 || !gs[0].Revoked {
		t.Errorf("revoked sealed grant: %+v %v", gs, err)
	}
}

// TestRedisCleartextRefused: a consent written in clear text (by someone
// without the key) is refused by a store that encrypts, and reencrypt seals
// it.
func TestRedisCleartextRefused(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	client, _ := newClient(t, addr)
	ctx := context.Background()
	ks, err := keyset.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	plain := newRedis(t, client, "clr", consentstore.WithCache(0, 0))
	rotationFixture(t, plain, "p")
	sealed := newRedis(t, client, "clr", consentstore.WithKeySet(ks), consentstore.WithCache(0, 0))
	if _, err := sealed.ForPatient(ctx, "Patient/r1"); !errors.Is(err, consentstore.ErrCleartext) {
		t.Errorf("clear text consent read by a store that encrypts: %v", err)
	}
	if _, err := sealed.GetAgreement(ctx, "papp"); !errors.Is(err, consentstore.ErrCleartext) {
		t.Errorf("clear text agreement read by a store that encrypts: %v", err)
	}
	p := reencrypt(t, sealed)
	if p.Consents != 3 || p.Grants != 1 || p.Agreements != 1 {
		t.Errorf("reencrypt of clear text: %+v", p)
	}
	if err := readAll(sealed, "p"); err != nil {
		t.Fatal(err)
	}
	if dump := dumpValues(t, client, "clr"); strings.Contains(dump, "resourceType") || strings.Contains(dump, "Secret Vendor") {
		t.Error("clear text left after reencrypt")
	}
	if _, err := plain.Reencrypt(ctx, "", 10, func(consentstore.ReencryptProgress) error { return nil }); !errors.Is(err, consentstore.ErrNoKeySet) {
		t.Errorf("reencrypt without keys: %v", err)
	}
}
