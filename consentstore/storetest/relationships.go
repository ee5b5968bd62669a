package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/consentstore"
)

// RunRelationships runs the suite every [consentstore.Relationships] store
// must pass; newStore returns a new, empty store for each test.
func RunRelationships(t *testing.T, newStore func(t *testing.T) consentstore.Relationships) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s consentstore.Relationships)
	}{
		{"put and list", testRelPutList},
		{"derived id replaces", testRelDerivedID},
		{"invalid", testRelInvalid},
		{"period boundaries", testRelPeriod},
		{"delete", testRelDelete},
		{"moved to another patient", testRelMoved},
		{"active matches a model", testRelModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func careTeam(patient, practitioner string) consentstore.Relationship {
	return consentstore.Relationship{Kind: consentstore.RelationshipCareTeam, Patient: patient, Practitioner: practitioner,
		Organization: "Organization/o1", Source: "CareTeam/ct1"}
}

func mustPutRel(t *testing.T, s consentstore.Relationships, r consentstore.Relationship) consentstore.Relationship {
	t.Helper()
	got, err := s.PutRelationship(context.Background(), r)
	if err != nil {
		t.Fatalf("put %+v: %v", r, err)
	}
	return got
}

func active(t *testing.T, s consentstore.Relationships, practitioner, patient string, at time.Time) bool {
	t.Helper()
	ok, err := s.ActiveRelationship(context.Background(), practitioner, patient, at)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func ids(rs []consentstore.Relationship) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func testRelPutList(t *testing.T, s consentstore.Relationships) {
	ctx := context.Background()
	a := mustPutRel(t, s, consentstore.Relationship{ID: "a", Kind: "careteam", Patient: "Patient/1", Practitioner: "Practitioner/p1",
		Start: Clock.Add(-time.Hour), End: Clock.Add(time.Hour), Source: "CareTeam/ct1", Organization: "Organization/o1"})
	if a.UpdatedAt.IsZero() || !a.Start.Equal(Clock.Add(-time.Hour)) || !a.End.Equal(Clock.Add(time.Hour)) {
		t.Fatalf("stored %+v", a)
	}
	mustPutRel(t, s, consentstore.Relationship{ID: "b", Kind: "encounter", Patient: "Patient/1", Practitioner: "Practitioner/p2"})
	mustPutRel(t, s, consentstore.Relationship{ID: "c", Kind: "encounter", Patient: "Patient/2", Practitioner: "Practitioner/p1"})
	byPatient, err := s.PatientRelationships(ctx, "Patient/1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids(byPatient)); got != "[a b]" {
		t.Fatalf("patient's relationships %s, want [a b]", got)
	}
	if byPatient[0].Source != "CareTeam/ct1" || byPatient[0].Organization != "Organization/o1" || byPatient[0].Kind != "careteam" {
		t.Fatalf("listed %+v", byPatient[0])
	}
	byPract, err := s.PractitionerRelationships(ctx, "Practitioner/p1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids(byPract)); got != "[a c]" {
		t.Fatalf("practitioner's relationships %s, want [a c]", got)
	}
	none, err := s.PatientRelationships(ctx, "Patient/9")
	if err != nil || len(none) != 0 {
		t.Fatalf("unknown patient: %v %v", none, err)
	}
}

func testRelDerivedID(t *testing.T, s consentstore.Relationships) {
	r := careTeam("Patient/1", "Practitioner/p1")
	first := mustPutRel(t, s, r)
	if first.ID != consentstore.RelationshipID("careteam", "CareTeam/ct1", "Patient/1", "Practitioner/p1") {
		t.Fatalf("id %q is not the derived one", first.ID)
	}
	r.End = Clock.Add(-time.Hour) // the same participation, now ended
	mustPutRel(t, s, r)
	list, err := s.PatientRelationships(context.Background(), "Patient/1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !list[0].End.Equal(Clock.Add(-time.Hour)) {
		t.Fatalf("after re-import %+v, want one ended relationship", list)
	}
	if active(t, s, "Practitioner/p1", "Patient/1", Clock) {
		t.Fatal("an ended relationship is active")
	}
}

func testRelInvalid(t *testing.T, s consentstore.Relationships) {
	ok := careTeam("Patient/1", "Practitioner/p1")
	for _, tc := range []struct {
		field string
		edit  func(r *consentstore.Relationship)
	}{
		{"kind", func(r *consentstore.Relationship) { r.Kind = "CareTeam" }},
		{"kind", func(r *consentstore.Relationship) { r.Kind = "" }},
		{"patient", func(r *consentstore.Relationship) { r.Patient = "" }},
		{"patient", func(r *consentstore.Relationship) { r.Patient = "patient/1" }},
		{"patient", func(r *consentstore.Relationship) { r.Patient = "Patient/1 " }},
		{"patient", func(r *consentstore.Relationship) { r.Patient = "http://x/Patient/1" }},
		{"practitioner", func(r *consentstore.Relationship) { r.Practitioner = "" }},
		{"practitioner", func(r *consentstore.Relationship) { r.Practitioner = "Organization/o1" }},
		{"practitioner", func(r *consentstore.Relationship) { r.Practitioner = "Practitioner/" }},
		{"organization", func(r *consentstore.Relationship) { r.Organization = "o1" }},
		{"source", func(r *consentstore.Relationship) { r.Source = "Patient/1" }},
		{"id", func(r *consentstore.Relationship) { r.ID = "a/b" }},
		{"end", func(r *consentstore.Relationship) { r.Start, r.End = Clock, Clock }},
		{"end", func(r *consentstore.Relationship) { r.Start, r.End = Clock, Clock.Add(-time.Second) }},
	} {
		r := ok
		tc.edit(&r)
		_, err := s.PutRelationship(context.Background(), r)
		if !errors.Is(err, consentstore.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", r, err)
			continue
		}
		if want := "relationship." + tc.field; !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v does not name %s", r, err, want)
		}
	}
	if list, _ := s.PatientRelationships(context.Background(), "Patient/1"); len(list) != 0 {
		t.Fatalf("invalid puts stored %+v", list)
	}
}

func testRelPeriod(t *testing.T, s consentstore.Relationships) {
	r := careTeam("Patient/1", "Practitioner/p1")
	r.Start, r.End = Clock, Clock.Add(24*time.Hour)
	mustPutRel(t, s, r)
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{Clock.Add(-time.Nanosecond), false},
		{Clock, true}, // start is inclusive
		{Clock.Add(12 * time.Hour), true},
		{Clock.Add(24*time.Hour - time.Nanosecond), true},
		{Clock.Add(24 * time.Hour), false}, // end is exclusive
	} {
		if got := active(t, s, "Practitioner/p1", "Patient/1", tc.at); got != tc.want {
			t.Errorf("at %s: active %v, want %v", tc.at, got, tc.want)
		}
	}
	for _, tc := range []struct{ practitioner, patient string }{
		{"Practitioner/p2", "Patient/1"},
		{"Practitioner/p1", "Patient/2"},
		{"", "Patient/1"},
		{"Practitioner/p1", ""},
		{"practitioner/p1", "Patient/1"},
		{"PractitionerRole/p1", "Patient/1"},
	} {
		if active(t, s, tc.practitioner, tc.patient, Clock) {
			t.Errorf("%q → %q is active", tc.practitioner, tc.patient)
		}
	}
	open := careTeam("Patient/3", "Practitioner/p3") // no period
	mustPutRel(t, s, open)
	if !active(t, s, "Practitioner/p3", "Patient/3", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		!active(t, s, "Practitioner/p3", "Patient/3", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("an open period does not hold")
	}
}

func testRelDelete(t *testing.T, s consentstore.Relationships) {
	ctx := context.Background()
	r := mustPutRel(t, s, careTeam("Patient/1", "Practitioner/p1"))
	got, err := s.DeleteRelationship(ctx, r.ID)
	if err != nil || got.ID != r.ID || got.Patient != "Patient/1" {
		t.Fatalf("delete: %+v %v", got, err)
	}
	if active(t, s, "Practitioner/p1", "Patient/1", Clock) {
		t.Fatal("a deleted relationship is active")
	}
	for _, list := range []func(context.Context, string) ([]consentstore.Relationship, error){
		func(ctx context.Context, _ string) ([]consentstore.Relationship, error) {
			return s.PatientRelationships(ctx, "Patient/1")
		},
		func(ctx context.Context, _ string) ([]consentstore.Relationship, error) {
			return s.PractitionerRelationships(ctx, "Practitioner/p1")
		},
	} {
		if rs, err := list(ctx, ""); err != nil || len(rs) != 0 {
			t.Fatalf("listed after delete: %+v %v", rs, err)
		}
	}
	if _, err := s.DeleteRelationship(ctx, r.ID); !errors.Is(err, consentstore.ErrRelationshipNotFound) {
		t.Fatalf("second delete: %v, want ErrRelationshipNotFound", err)
	}
	if _, err := s.DeleteRelationship(ctx, "nope"); !errors.Is(err, consentstore.ErrRelationshipNotFound) {
		t.Fatalf("unknown id: %v, want ErrRelationshipNotFound", err)
	}
}

func testRelMoved(t *testing.T, s consentstore.Relationships) {
	ctx := context.Background()
	r := careTeam("Patient/1", "Practitioner/p1")
	r.ID = "fixed"
	mustPutRel(t, s, r)
	r.Patient, r.Practitioner = "Patient/2", "Practitioner/p2"
	mustPutRel(t, s, r)
	if active(t, s, "Practitioner/p1", "Patient/1", Clock) {
		t.Fatal("the old pair still counts")
	}
	if !active(t, s, "Practitioner/p2", "Patient/2", Clock) {
		t.Fatal("the new pair does not count")
	}
	if rs, _ := s.PatientRelationships(ctx, "Patient/1"); len(rs) != 0 {
		t.Fatalf("old patient lists %+v", rs)
	}
	if rs, _ := s.PractitionerRelationships(ctx, "Practitioner/p1"); len(rs) != 0 {
		t.Fatalf("old practitioner lists %+v", rs)
	}
}

// testRelModel: after any sequence of puts and deletes, ActiveRelationship
// answers as a plain list of the stored relationships does; a missing,
// deleted or expired relationship is never active.
func testRelModel(t *testing.T, s consentstore.Relationships) {
	ctx := context.Background()
	seq := 0
	rapid.Check(t, func(rt *rapid.T) {
		seq++
		ns := fmt.Sprintf("m%d-", seq) // each run its own patients
		patients := []string{"Patient/" + ns + "1", "Patient/" + ns + "2"}
		practs := []string{"Practitioner/" + ns + "1", "Practitioner/" + ns + "2"}
		model := map[string]consentstore.Relationship{}
		hour := func(label string) time.Time {
			return Clock.Add(time.Duration(rapid.IntRange(-48, 48).Draw(rt, label)) * time.Hour)
		}
		for i := range rapid.IntRange(1, 12).Draw(rt, "ops") {
			id := fmt.Sprintf("%sr%d", ns, rapid.IntRange(0, 3).Draw(rt, fmt.Sprint("id", i)))
			if rapid.IntRange(0, 3).Draw(rt, fmt.Sprint("op", i)) == 0 {
				_, err := s.DeleteRelationship(ctx, id)
				if _, ok := model[id]; ok != (err == nil) {
					rt.Fatalf("delete %s: %v (in model: %v)", id, err, ok)
				}
				delete(model, id)
				continue
			}
			r := consentstore.Relationship{ID: id, Kind: "encounter",
				Patient:      rapid.SampledFrom(patients).Draw(rt, fmt.Sprint("patient", i)),
				Practitioner: rapid.SampledFrom(practs).Draw(rt, fmt.Sprint("pract", i))}
			if rapid.Bool().Draw(rt, fmt.Sprint("hasStart", i)) {
				r.Start = hour(fmt.Sprint("start", i))
			}
			if rapid.Bool().Draw(rt, fmt.Sprint("hasEnd", i)) {
				r.End = hour(fmt.Sprint("end", i))
			}
			stored, err := s.PutRelationship(ctx, r)
			if (err == nil) != (r.Validate() == nil) {
				rt.Fatalf("put %+v: %v", r, err)
			}
			if err == nil {
				model[id] = stored
			}
		}
		for i := range 8 {
			pr := rapid.SampledFrom(practs).Draw(rt, fmt.Sprint("qpract", i))
			pa := rapid.SampledFrom(patients).Draw(rt, fmt.Sprint("qpatient", i))
			at := hour(fmt.Sprint("qat", i))
			want := false
			for _, r := range model {
				want = want || (r.Practitioner == pr && r.Patient == pa && r.ActiveAt(at))
			}
			got, err := s.ActiveRelationship(ctx, pr, pa, at)
			if err != nil || got != want {
				rt.Fatalf("active %s %s at %s: %v %v, want %v", pr, pa, at, got, err, want)
			}
		}
	})
}
