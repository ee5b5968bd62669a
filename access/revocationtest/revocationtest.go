// Package revocationtest is the shared test suite of [access.Revocations]:
// every implementation (the in-memory store, the Redis store) runs [Run].
package revocationtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/access"
)

// Clock is a settable clock for the suite.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Open returns an empty store reading clock c.
type Open func(t *testing.T, c *Clock) access.Revocations

// Run runs the suite against the stores open returns.
func Run(t *testing.T, open Open) {
	t.Helper()
	const (
		hashA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		hashB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	)
	start := time.Now().Truncate(time.Millisecond)
	type lookup struct {
		jti, sha string
		want     bool
	}
	tests := []struct {
		name    string
		revoke  []access.Revocation // Until relative to start via Until field
		advance time.Duration
		lookups []lookup
	}{
		{
			name:   "by jti",
			revoke: []access.Revocation{{JTI: "tok-1", Until: start.Add(time.Hour)}},
			lookups: []lookup{
				{jti: "tok-1", sha: hashA, want: true},
				{jti: "tok-1", want: true},
				{jti: "tok-2", sha: hashA, want: false},
				{jti: "", sha: hashA, want: false},
				{jti: "TOK-1", want: false},
			},
		},
		{
			name:   "by hash, whether or not the token has a jti",
			revoke: []access.Revocation{{TokenSHA256: hashA, Until: start.Add(time.Hour)}},
			lookups: []lookup{
				{sha: hashA, want: true},
				{jti: "tok-9", sha: hashA, want: true},
				{jti: "tok-9", sha: hashB, want: false},
				{sha: hashB, want: false},
			},
		},
		{
			name:   "a jti that looks like a hash key is still a jti",
			revoke: []access.Revocation{{JTI: hashA, Until: start.Add(time.Hour)}},
			lookups: []lookup{
				{sha: hashA, want: false},
				{jti: hashA, want: true},
			},
		},
		{
			name:    "kept until the grace after until has passed",
			revoke:  []access.Revocation{{JTI: "tok-1", Until: start.Add(time.Hour)}},
			advance: time.Hour + access.RevocationGrace - time.Millisecond,
			lookups: []lookup{{jti: "tok-1", want: true}},
		},
		{
			name:    "gone on its own after until and the grace",
			revoke:  []access.Revocation{{JTI: "tok-1", Until: start.Add(time.Hour)}, {TokenSHA256: hashA, Until: start.Add(time.Hour)}},
			advance: time.Hour + access.RevocationGrace,
			lookups: []lookup{{jti: "tok-1", want: false}, {sha: hashA, want: false}},
		},
		{
			name:    "a later until wins over an earlier one",
			revoke:  []access.Revocation{{JTI: "tok-1", Until: start.Add(2 * time.Hour)}, {JTI: "tok-1", Until: start.Add(time.Hour)}},
			advance: 90 * time.Minute,
			lookups: []lookup{{jti: "tok-1", want: true}},
		},
		{
			name:    "an earlier until is extended by a later one",
			revoke:  []access.Revocation{{JTI: "tok-1", Until: start.Add(time.Hour)}, {JTI: "tok-1", Until: start.Add(2 * time.Hour)}},
			advance: 90 * time.Minute,
			lookups: []lookup{{jti: "tok-1", want: true}},
		},
		{
			name: "nothing revoked",
			lookups: []lookup{
				{jti: "tok-1", sha: hashA, want: false},
				{sha: hashA, want: false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := NewClock(start)
			s := open(t, clock)
			for _, r := range tt.revoke {
				r.RevokedBy, r.RevokedAt = "admin", start
				got, err := s.RevokeToken(ctx, r)
				if err != nil {
					t.Fatalf("RevokeToken(%+v): %v", r, err)
				}
				if got.Key() != r.Key() || got.Until.Before(r.Until) {
					t.Fatalf("RevokeToken(%+v) = %+v", r, got)
				}
			}
			clock.Advance(tt.advance)
			for _, l := range tt.lookups {
				got, err := s.TokenRevoked(ctx, l.jti, l.sha)
				if err != nil {
					t.Fatalf("TokenRevoked(%q, %q): %v", l.jti, l.sha, err)
				}
				if got != l.want {
					t.Errorf("TokenRevoked(%q, %q) = %v, want %v", l.jti, l.sha, got, l.want)
				}
			}
		})
	}
}

// Property checks a store against a model over random sequences of
// revocations, clock steps and lookups: a token is refused exactly when
// its jti or its hash was revoked with an until (plus the grace) still
// ahead; a later revocation never shortens an earlier one.
func Property(t *testing.T, open Open) {
	t.Helper()
	rapid.Check(t, func(rt *rapid.T) {
		clock := NewClock(time.Now().Truncate(time.Millisecond))
		s := open(t, clock)
		ctx := context.Background()
		model := map[string]time.Time{} // key → entry expiry
		jtis := []string{"a", "b", "c", "h:" + strings.Repeat("1", 64)}
		hashes := []string{strings.Repeat("1", 64), strings.Repeat("2", 64), strings.Repeat("3", 64)}
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			switch rapid.IntRange(0, 2).Draw(rt, "op") {
			case 0:
				r := access.Revocation{Until: clock.Now().Add(time.Duration(rapid.IntRange(1, 7200).Draw(rt, "until s")) * time.Second)}
				if rapid.Bool().Draw(rt, "by jti") {
					r.JTI = rapid.SampledFrom(jtis).Draw(rt, "jti")
				} else {
					r.TokenSHA256 = rapid.SampledFrom(hashes).Draw(rt, "sha")
				}
				if _, err := s.RevokeToken(ctx, r); err != nil {
					rt.Fatalf("RevokeToken(%+v): %v", r, err)
				}
				if r.Expires().After(model[r.Key()]) {
					model[r.Key()] = r.Expires()
				}
			case 1:
				clock.Advance(time.Duration(rapid.IntRange(0, 3600).Draw(rt, "advance s")) * time.Second)
			default:
				jti := rapid.SampledFrom(append([]string{""}, jtis...)).Draw(rt, "lookup jti")
				sha := rapid.SampledFrom(append([]string{""}, hashes...)).Draw(rt, "lookup sha")
				now := clock.Now()
				want := (jti != "" && now.Before(model[access.JTIKey(jti)])) || (sha != "" && now.Before(model[access.HashKey(sha)]))
				got, err := s.TokenRevoked(ctx, jti, sha)
				if err != nil {
					rt.Fatalf("TokenRevoked(%q, %q): %v", jti, sha, err)
				}
				if got != want {
					rt.Fatalf("TokenRevoked(%q, %q) = %v at +%s, want %v (model %v)", jti, sha, got, now.Sub(time.Now()).Round(time.Second), want, model)
				}
			}
		}
	})
}
