package access_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/access/revocationtest"
)

func TestNewGrant(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	reason := "patient unconscious, allergy history needed"
	tests := []struct {
		name                     string
		subject, patient, reason string
		ttl                      time.Duration
		field                    string
		expires                  time.Time
	}{
		{name: "default ttl", subject: "Practitioner/p1", patient: "Patient/52", reason: reason, expires: now.Add(4 * time.Hour)},
		{name: "max ttl", subject: "Practitioner/p1", patient: "Patient/52", reason: reason, ttl: 24 * time.Hour, expires: now.Add(24 * time.Hour)},
		{name: "over max ttl", subject: "Practitioner/p1", patient: "Patient/52", reason: reason, ttl: 25 * time.Hour, field: "ttl"},
		{name: "negative ttl", subject: "Practitioner/p1", patient: "Patient/52", reason: reason, ttl: -time.Second, field: "ttl"},
		{name: "short reason", subject: "Practitioner/p1", patient: "Patient/52", reason: "emergency", field: "reason"},
		{name: "reason of 20 characters counts runes", subject: "Practitioner/p1", patient: "Patient/52", reason: strings.Repeat("é", 20), expires: now.Add(4 * time.Hour)},
		{name: "white space does not count", subject: "Practitioner/p1", patient: "Patient/52", reason: "a b c d e f g h i j k l m n o p q r s", field: "reason"},
		{name: "padding does not count", subject: "Practitioner/p1", patient: "Patient/52", reason: "emergency" + strings.Repeat(" \t\n\u00a0\u3000", 10), field: "reason"},
		{name: "20 non-space characters among spaces", subject: "Practitioner/p1", patient: "Patient/52", reason: "a b c d e f g h i j k l m n o p q r s t", expires: now.Add(4 * time.Hour)},
		{name: "no subject", patient: "Patient/52", reason: reason, field: "subject"},
		{name: "no patient", subject: "Practitioner/p1", reason: reason, field: "patient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := access.NewGrant(tt.subject, tt.patient, tt.reason, "", tt.ttl, now)
			if tt.field != "" {
				var ie *access.InvalidError
				if !errors.As(err, &ie) || ie.Field != tt.field {
					t.Fatalf("err = %v, want an InvalidError on %s", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !g.ExpiresAt.Equal(tt.expires) || !g.ActiveAt(now) || g.ActiveAt(g.ExpiresAt) {
				t.Fatalf("grant %+v", g)
			}
		})
	}
}

func TestMemoryGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := access.NewMemory()
	now := time.Now()
	g, _ := access.NewGrant("Practitioner/p1", "Patient/52", "patient unconscious in the ED", "", time.Hour, now)
	g, err := m.PutGrant(ctx, g)
	if err != nil || g.ID == "" {
		t.Fatalf("put: %v %+v", err, g)
	}
	if _, ok, _ := m.ActiveGrant(ctx, "Practitioner/p1", "Patient/52", now); !ok {
		t.Fatal("grant not active")
	}
	if _, ok, _ := m.ActiveGrant(ctx, "Practitioner/p2", "Patient/52", now); ok {
		t.Fatal("grant active for another subject")
	}
	if list, _ := m.ListGrants(ctx, "", "Patient/52"); len(list) != 1 {
		t.Fatalf("list = %v", list)
	}
	if _, err := m.RevokeGrant(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.ActiveGrant(ctx, "Practitioner/p1", "Patient/52", now); ok {
		t.Fatal("revoked grant still active")
	}
	if _, err := m.RevokeGrant(ctx, "nope"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestMemoryAgreements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := access.NewMemory()
	if _, err := m.PutAgreement(ctx, access.Agreement{ClientID: "app"}); err == nil {
		t.Fatal("agreement without vendor stored")
	}
	a := access.Agreement{ClientID: "app", Vendor: "Acme", BAASigned: true, Purposes: []string{"TREAT"}, ResourceTypes: []string{"*"}}
	if _, err := m.PutAgreement(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := m.GetAgreement(ctx, "app")
	if err != nil || !got.ActiveAt(time.Now()) || !got.Covers("TREAT", "Observation") || got.Covers("HMARKT", "Observation") {
		t.Fatalf("get: %v %+v", err, got)
	}
	if _, err := m.RevokeAgreement(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.GetAgreement(ctx, "app"); got.ActiveAt(time.Now()) || !got.Revoked {
		t.Fatalf("revoked agreement still active: %+v", got)
	}
	if _, err := m.GetAgreement(ctx, "other"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestMemoryRevocations(t *testing.T) {
	t.Parallel()
	revocationtest.Run(t, func(_ *testing.T, c *revocationtest.Clock) access.Revocations {
		return access.NewMemory(access.WithMemoryClock(c.Now))
	})
}

func TestMemoryRevocationSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := revocationtest.NewClock(time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC))
	m := access.NewMemory(access.WithMemoryClock(c.Now))
	for i, jti := range []string{"a", "b", "c"} {
		if _, err := m.RevokeToken(ctx, access.Revocation{JTI: jti, Until: c.Now().Add(time.Duration(i+1) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(2*time.Hour + access.RevocationGrace)
	if _, err := m.RevokeToken(ctx, access.Revocation{JTI: "d", Until: c.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// a and b are past their expiry: swept; c and d remain.
	if n := m.RevocationCount(); n != 2 {
		t.Fatalf("%d entries after the sweep, want 2", n)
	}
}

func TestNewRevocation(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	hash := access.TokenSHA256("header.payload.signature")
	tests := []struct {
		name     string
		jti, sha string
		until    time.Time
		field    string
		wantKey  string
	}{
		{name: "jti", jti: "tok-1", until: now.Add(time.Hour), wantKey: "j:tok-1"},
		{name: "hash", sha: hash, until: now.Add(time.Hour), wantKey: "h:" + hash},
		{name: "at most the maximum ahead", jti: "tok-1", until: now.Add(access.MaxRevocation), wantKey: "j:tok-1"},
		{name: "neither", until: now.Add(time.Hour), field: "jti"},
		{name: "both", jti: "tok-1", sha: hash, until: now.Add(time.Hour), field: "tokenSha256"},
		{name: "upper-case hash", sha: strings.ToUpper(hash), until: now.Add(time.Hour), field: "tokenSha256"},
		{name: "short hash", sha: hash[:63], until: now.Add(time.Hour), field: "tokenSha256"},
		{name: "long jti", jti: strings.Repeat("x", access.MaxJTILength+1), until: now.Add(time.Hour), field: "jti"},
		{name: "jti not UTF-8", jti: "\xff", until: now.Add(time.Hour), field: "jti"},
		{name: "no until", jti: "tok-1", field: "until"},
		{name: "until now", jti: "tok-1", until: now, field: "until"},
		{name: "until in the past", jti: "tok-1", until: now.Add(-time.Second), field: "until"},
		{name: "until absurdly far", jti: "tok-1", until: now.Add(access.MaxRevocation + time.Second), field: "until"},
		{name: "until in year 9999", jti: "tok-1", until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), field: "until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := access.NewRevocation(tt.jti, tt.sha, tt.until, "admin", now)
			if tt.field != "" {
				var ie *access.InvalidError
				if !errors.As(err, &ie) || ie.Field != tt.field {
					t.Fatalf("err = %v, want an InvalidError on %s", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Key() != tt.wantKey || !r.Until.Equal(tt.until) || r.RevokedBy != "admin" || !r.Expires().Equal(tt.until.Add(access.RevocationGrace)) {
				t.Fatalf("revocation %+v", r)
			}
		})
	}
}

func TestMemoryRevocationsProperty(t *testing.T) {
	t.Parallel()
	revocationtest.Property(t, func(_ *testing.T, c *revocationtest.Clock) access.Revocations {
		return access.NewMemory(access.WithMemoryClock(c.Now))
	})
}
