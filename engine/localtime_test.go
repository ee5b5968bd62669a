package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// officeHours is what testdata/localtime permits: Monday to Friday,
// 09:30 to 17:00 in the tenant's zone.
func officeHours(local time.Time) bool {
	wd := local.Weekday()
	m := local.Hour()*60 + local.Minute()
	return wd != time.Saturday && wd != time.Sunday && m >= 570 && local.Hour() < 17
}

func localTimeRequest(org, action string, at time.Time) *chaperonev1.CheckRequest {
	req := request(nil, action, "Observation", "TREAT")
	req.Subject.Organization = org
	if org == "" {
		// A patient has no organization: the bundle's zone.
		req.Subject.Id, req.Subject.Kind = "Patient/52", "patient"
	}
	req.Resource.Patient = ""
	req.Context.Time = timestamppb.New(at)
	return req
}

// TestLocalTime: context.localTime is the decision time in the tenant's
// zone, across daylight saving changes and half-hour offsets, in Cedar and
// Rego alike.
func TestLocalTime(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/localtime")
	utc := func(s string) time.Time {
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	tests := []struct {
		name  string
		org   string
		at    string
		allow bool
	}{
		{name: "New York, Monday 09:30 EST", org: "Organization/o1", at: "2026-01-05T14:30:00Z", allow: true},
		{name: "New York, Monday 09:29 EST", org: "Organization/o1", at: "2026-01-05T14:29:59Z"},
		{name: "New York, Friday 16:59 EST", org: "Organization/o1", at: "2026-01-09T21:59:00Z", allow: true},
		{name: "New York, Friday 17:00 EST", org: "Organization/o1", at: "2026-01-09T22:00:00Z"},
		{name: "New York, Monday 09:30 EDT after the spring change", org: "Organization/o1", at: "2026-03-09T13:30:00Z", allow: true},
		{name: "New York, 08:30 EDT is 09:30 in winter time", org: "Organization/o1", at: "2026-03-09T12:30:00Z"},
		{name: "New York, Monday 16:30 EST after the autumn change", org: "Organization/o1", at: "2026-11-02T21:30:00Z", allow: true},
		{name: "New York, Monday 17:30 EST is 16:30 in summer time", org: "Organization/o1", at: "2026-11-02T22:30:00Z"},
		{name: "New York, Saturday", org: "Organization/o1", at: "2026-01-10T15:00:00Z"},
		{name: "UTC Saturday 02:00 is Friday evening in New York", org: "Organization/o1", at: "2026-01-10T02:00:00Z"},
		{name: "Kolkata, half-hour offset: 09:30 IST", org: "Organization/o2", at: "2026-01-05T04:00:00Z", allow: true},
		{name: "Kolkata, 09:29 IST", org: "Organization/o2", at: "2026-01-05T03:59:00Z"},
		{name: "Kolkata, Monday morning is Sunday evening in New York", org: "Organization/o2", at: "2026-01-05T04:00:00Z", allow: true},
		{name: "a tenant without an entry: the bundle's zone (UTC)", org: "Organization/o3", at: "2026-01-05T09:30:00Z", allow: true},
		{name: "a tenant without an entry at 14:29 UTC", org: "Organization/o3", at: "2026-01-05T09:29:00Z"},
		{name: "a patient, no organization: the bundle's zone", org: "", at: "2026-01-05T09:30:00Z", allow: true},
	}
	e := engine.New(noConsent, engine.WithRequestTime())
	e.Activate(b)
	for _, tt := range tests {
		for _, action := range []string{"read", "search"} {
			t.Run(tt.name+"/"+action, func(t *testing.T) {
				t.Parallel()
				resp := e.Check(context.Background(), localTimeRequest(tt.org, action, utc(tt.at)))
				if got := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW; got != tt.allow {
					t.Fatalf("got %v %v, want allow=%v", resp.GetDecision(), resp.GetReasons(), tt.allow)
				}
			})
		}
	}
}

// TestLocalTimeProperty: for any instant of 2025-2027 and any tenant, both
// layers decide office hours exactly as the tenant's zone computes them.
func TestLocalTimeProperty(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/localtime")
	zones := map[string]string{"Organization/o1": "America/New_York", "Organization/o2": "Asia/Kolkata", "Organization/o3": "UTC", "": "UTC"}
	locs := map[string]*time.Location{}
	for org, z := range zones {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		locs[org] = loc
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	end := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	e := engine.New(noConsent, engine.WithRequestTime(), engine.WithMemo(0))
	e.Activate(b)
	rapid.Check(t, func(t *rapid.T) {
		at := time.Unix(rapid.Int64Range(start, end).Draw(t, "at"), 0).UTC()
		org := rapid.SampledFrom([]string{"Organization/o1", "Organization/o2", "Organization/o3", ""}).Draw(t, "org")
		action := rapid.SampledFrom([]string{"read", "search"}).Draw(t, "action")
		want := officeHours(at.In(locs[org]))
		resp := e.Check(context.Background(), localTimeRequest(org, action, at))
		if got := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW; got != want {
			t.Fatalf("%s %s %s (local %s): got %v, want allow=%v", org, action, at, at.In(locs[org]), resp.GetDecision(), want)
		}
	})
}

// TestTimezoneFailsClosed: a zone the timezone database does not know, the
// machine's zone and a tenant that is not an organization fail the load.
func TestTimezoneFailsClosed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, manifest string }{
		{"unknown bundle zone", "timezone: America/New_Yrok\n"},
		{"machine zone", "timezone: Local\n"},
		{"unknown tenant zone", "tenantTimezones: {Organization/o1: Europe/Pariss}\n"},
		{"empty tenant zone", "tenantTimezones: {Organization/o1: \"\"}\n"},
		{"tenant is not an organization", "tenantTimezones: {Practitioner/p1: UTC}\n"},
		{"tenant without an id", "tenantTimezones: {\"Organization/\": UTC}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copyDir(t, "testdata/localtime", dir)
			if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte("name: x\nrevision: \"1\"\n"+tc.manifest), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := engine.LoadBundle(os.DirFS(dir))
			var ce *engine.CompileError
			if !errors.As(err, &ce) || ce.File != engine.ManifestFile {
				t.Fatalf("got %v, want a manifest error", err)
			}
		})
	}
}
