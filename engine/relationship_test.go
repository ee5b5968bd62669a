package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// failingRelationships is a relationship store that cannot answer, and
// counts how often it was asked.
type failingRelationships struct{ calls atomic.Int64 }

func (f *failingRelationships) ActiveRelationship(context.Context, string, string, time.Time) (bool, error) {
	f.calls.Add(1)
	return false, errors.New("connection refused")
}

var relNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func relStore(t testing.TB) *consentstore.MemoryRelationships {
	t.Helper()
	s := consentstore.NewMemoryRelationships(nil)
	for _, r := range []consentstore.Relationship{
		{Kind: "careteam", Patient: "Patient/52", Practitioner: "Practitioner/p1", Source: "CareTeam/ct1", Start: relNow.Add(-24 * time.Hour)},
		{Kind: "encounter", Patient: "Patient/53", Practitioner: "Practitioner/p1", Source: "Encounter/e1", Start: relNow.Add(-2 * time.Hour), End: relNow},
		{Kind: "careteam", Patient: "Patient/54", Practitioner: "Practitioner/p1", Source: "CareTeam/ct2", Start: relNow.Add(time.Hour)},
	} {
		if _, err := s.PutRelationship(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestTreatingRelationship: context.treatingRelationship (Cedar) and
// input.facts.treatingRelationship (Rego) are true only for the subject's
// own relationship with the patient, holding at the decision time (end
// exclusive); a store that cannot answer denies RELATIONSHIP_UNAVAILABLE.
func TestTreatingRelationship(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/relationship")
	store := relStore(t)
	tests := []struct {
		name    string
		edit    func(r *chaperonev1.CheckRequest)
		failing bool
		allow   bool
		code    string
	}{
		{name: "care team member", allow: true},
		{name: "an encounter that ended at the decision time", edit: func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/53" }, code: "NO_PERMIT"},
		{name: "the encounter one second before its end", edit: func(r *chaperonev1.CheckRequest) {
			r.Resource.Patient = "Patient/53"
			r.Context.Time = timestamppb.New(relNow.Add(-time.Second))
		}, allow: true},
		{name: "a care team not started yet", edit: func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/54" }, code: "NO_PERMIT"},
		{name: "another practitioner", edit: func(r *chaperonev1.CheckRequest) { r.Subject.Id = "Practitioner/p2" }, code: "NO_PERMIT"},
		{name: "another patient", edit: func(r *chaperonev1.CheckRequest) { r.Resource.Patient = "Patient/99" }, code: "NO_PERMIT"},
		{name: "a subject that is not a practitioner", edit: func(r *chaperonev1.CheckRequest) {
			r.Subject.Kind, r.Subject.Id, r.Subject.Organization = "device", "Device/d1", "Organization/o1"
		}, code: "NO_PERMIT"},
		{name: "the store cannot answer", failing: true, code: "RELATIONSHIP_UNAVAILABLE"},
	}
	for _, tt := range tests {
		for _, action := range []string{"read", "search"} {
			t.Run(tt.name+"/"+action, func(t *testing.T) {
				t.Parallel()
				var lookup engine.RelationshipLookup = store
				if tt.failing {
					lookup = &failingRelationships{}
				}
				e := engine.New(noConsent, engine.WithRelationships(lookup), engine.WithRequestTime())
				e.Activate(b)
				req := request(nil, action, "Observation", "TREAT")
				req.Context.Time = timestamppb.New(relNow)
				if tt.edit != nil {
					tt.edit(req)
				}
				resp := e.Check(context.Background(), req)
				allow := resp.GetDecision() == chaperonev1.Decision_DECISION_ALLOW
				if allow != tt.allow || (!allow && resp.GetReasons()[0].GetCode() != tt.code) {
					t.Fatalf("got %v %v, want allow=%v %s", resp.GetDecision(), resp.GetReasons(), tt.allow, tt.code)
				}
			})
		}
	}
}

// TestRelationshipOnlyWhenRead: a bundle whose policies never name
// treatingRelationship does not ask the store (no lookup on its path, and
// a store outage does not deny its decisions).
func TestRelationshipOnlyWhenRead(t *testing.T) {
	t.Parallel()
	failing := &failingRelationships{}
	e := engine.New(noConsent, engine.WithRelationships(failing), engine.WithRequestTime())
	e.Activate(loadTestBundle(t, "testdata/basic"))
	resp := e.Check(context.Background(), request([]string{"doctor"}, "read", "Observation", "TREAT"))
	for _, r := range resp.GetReasons() {
		if r.GetCode() == "RELATIONSHIP_UNAVAILABLE" {
			t.Fatalf("got %v", resp.GetReasons())
		}
	}
	if n := failing.calls.Load(); n != 0 {
		t.Fatalf("the store was asked %d times", n)
	}
}

// TestNoRelationshipNeverAllows: whatever relationships are stored, a
// request is allowed by a policy requiring the fact only when one of the
// subject's own relationships with the patient holds at the decision time.
func TestNoRelationshipNeverAllows(t *testing.T) {
	t.Parallel()
	b := loadTestBundle(t, "testdata/relationship")
	rapid.Check(t, func(rt *rapid.T) {
		store := consentstore.NewMemoryRelationships(nil)
		practs := []string{"Practitioner/p1", "Practitioner/p2", "PractitionerRole/p1"}
		patients := []string{"Patient/1", "Patient/2"}
		hour := func(label string) time.Time {
			return relNow.Add(time.Duration(rapid.IntRange(-5, 5).Draw(rt, label)) * time.Hour)
		}
		var stored []consentstore.Relationship
		for i := range rapid.IntRange(0, 5).Draw(rt, "n") {
			r := consentstore.Relationship{Kind: "encounter", Source: "Encounter/e" + string(rune('a'+i)),
				Patient: rapid.SampledFrom(patients).Draw(rt, "patient"), Practitioner: rapid.SampledFrom(practs).Draw(rt, "pract")}
			if rapid.Bool().Draw(rt, "hasStart") {
				r.Start = hour("start")
			}
			if rapid.Bool().Draw(rt, "hasEnd") {
				r.End = hour("end")
			}
			if r.Validate() != nil {
				continue
			}
			got, err := store.PutRelationship(context.Background(), r)
			if err != nil {
				rt.Fatal(err)
			}
			if rapid.Bool().Draw(rt, "deleted") {
				if _, err := store.DeleteRelationship(context.Background(), got.ID); err != nil {
					rt.Fatal(err)
				}
				continue
			}
			stored = append(stored, got)
		}
		e := engine.New(noConsent, engine.WithRelationships(store), engine.WithRequestTime(), engine.WithMemo(0))
		e.Activate(b)
		req := request(nil, "read", "Observation", "TREAT")
		req.Subject.Id = rapid.SampledFrom([]string{"Practitioner/p1", "Practitioner/p2"}).Draw(rt, "subject")
		req.Resource.Patient = rapid.SampledFrom(patients).Draw(rt, "requested")
		at := hour("at")
		req.Context.Time = timestamppb.New(at)
		want := false
		for _, r := range stored {
			want = want || (r.Practitioner == req.Subject.Id && r.Patient == req.Resource.Patient && r.ActiveAt(at))
		}
		if got := e.Check(context.Background(), req).GetDecision() == chaperonev1.Decision_DECISION_ALLOW; got != want {
			rt.Fatalf("allow %v, want %v (stored %+v)", got, want, stored)
		}
	})
}
