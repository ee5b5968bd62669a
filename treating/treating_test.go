package treating_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/treating"
)

const careTeam = `{"resourceType": "CareTeam", "id": "ct1", "status": %q,
  "subject": {"reference": "Patient/52"},
  "period": {"start": "2025-01-01", "end": "2025-12-31"},
  "managingOrganization": [{"reference": "Organization/o1"}],
  "participant": [
    {"member": {"reference": "Practitioner/p1"}},
    {"member": {"reference": "https://fhir.example/r4/Practitioner/p2/_history/3"}, "period": {"start": "2025-06-01T08:00:00Z"}},
    {"member": {"reference": "PractitionerRole/r1"}},
    {"member": {"reference": "PractitionerRole/unknown"}},
    {"member": {"reference": "RelatedPerson/rp1"}},
    {"member": {"reference": "Patient/52"}},
    {"member": {"reference": "Practitioner/p9"}, "period": {"end": "2024-12-01"}}
  ]}`

const role = `{"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/p3"}, "organization": {"reference": "Organization/o2"}}`

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func read(t *testing.T, docs ...string) ([]treating.Source, error) {
	t.Helper()
	r := treating.NewReader()
	for i, d := range docs {
		if err := r.Add(fmt.Sprintf("doc%d", i), []byte(d)); err != nil {
			return nil, err
		}
	}
	return r.Sources()
}

func summary(rs []consentstore.Relationship) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s %s %s %s %s [%s,%s) %s\n", r.Kind, r.Patient, r.Practitioner, r.Organization, r.Source,
			r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339), map[bool]string{true: "id", false: "noid"}[strings.HasPrefix(r.ID, "rel-")])
	}
	return b.String()
}

func TestCareTeam(t *testing.T) {
	t.Parallel()
	bundle := `{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ` + fmt.Sprintf(careTeam, "active") + `}, {"resource": ` + role + `}]}`
	srcs, err := read(t, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 1 || srcs[0].Ref != "CareTeam/ct1" || srcs[0].Patient != "Patient/52" {
		t.Fatalf("sources %+v", srcs)
	}
	want := `careteam Patient/52 Practitioner/p1 Organization/o1 CareTeam/ct1 [2025-01-01T00:00:00Z,2026-01-01T00:00:00Z) id
careteam Patient/52 Practitioner/p2 Organization/o1 CareTeam/ct1 [2025-06-01T08:00:00Z,2026-01-01T00:00:00Z) id
careteam Patient/52 Practitioner/p3 Organization/o1 CareTeam/ct1 [2025-01-01T00:00:00Z,2026-01-01T00:00:00Z) id
careteam Patient/52 PractitionerRole/unknown Organization/o1 CareTeam/ct1 [2025-01-01T00:00:00Z,2026-01-01T00:00:00Z) id
`
	if got := summary(srcs[0].Relationships); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	ids := map[string]bool{}
	for _, r := range srcs[0].Relationships {
		ids[r.ID] = true
	}
	if len(ids) != 4 {
		t.Fatalf("ids are not distinct: %v", ids)
	}
	// The same resource read again gives the same ids (a re-import replaces).
	again, _ := read(t, bundle)
	for i, r := range again[0].Relationships {
		if r.ID != srcs[0].Relationships[i].ID {
			t.Fatalf("id %d changed: %s → %s", i, srcs[0].Relationships[i].ID, r.ID)
		}
	}
}

func TestInactiveEstablishNothing(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"proposed", "suspended", "inactive", "entered-in-error", "Active"} {
		srcs, err := read(t, fmt.Sprintf(careTeam, status))
		if err != nil {
			t.Fatal(err)
		}
		if len(srcs) != 1 || srcs[0].Ref != "CareTeam/ct1" || len(srcs[0].Relationships) != 0 {
			t.Errorf("%s: %+v, want the source with no relationships", status, srcs)
		}
	}
	for _, status := range []string{"planned", "cancelled", "entered-in-error", "unknown", ""} {
		srcs, err := read(t, encounter(status, `"period": {"start": "2025-01-01T10:00:00Z"}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(srcs) != 1 || len(srcs[0].Relationships) != 0 {
			t.Errorf("encounter %q: %+v, want no relationships", status, srcs)
		}
	}
}

func encounter(status, period string) string {
	return fmt.Sprintf(`{"resourceType": "Encounter", "id": "e1", "status": %q, %s
	  "subject": {"reference": "Patient/52"}, "serviceProvider": {"reference": "Organization/o1"},
	  "participant": [{"individual": {"reference": "Practitioner/p1"}}, {"actor": {"reference": "Practitioner/p2"}, "period": {"start": "2025-01-01T11:00:00Z", "end": "2025-01-01T11:30:00Z"}}]}`,
		status, map[bool]string{true: period + ",", false: ""}[period != ""])
}

func TestEncounter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, status, period, want string
	}{
		{"in progress", "in-progress", `"period": {"start": "2025-01-01T10:00:00Z"}`,
			"encounter Patient/52 Practitioner/p1 Organization/o1 Encounter/e1 [2025-01-01T10:00:00Z,0001-01-01T00:00:00Z) id\n" +
				"encounter Patient/52 Practitioner/p2 Organization/o1 Encounter/e1 [2025-01-01T11:00:00Z,2025-01-01T11:30:01Z) id\n"},
		{"finished, with its end", "finished", `"period": {"start": "2025-01-01T10:00:00Z", "end": "2025-01-01T11:15:00Z"}`,
			"encounter Patient/52 Practitioner/p1 Organization/o1 Encounter/e1 [2025-01-01T10:00:00Z,2025-01-01T11:15:01Z) id\n" +
				"encounter Patient/52 Practitioner/p2 Organization/o1 Encounter/e1 [2025-01-01T11:00:00Z,2025-01-01T11:15:01Z) id\n"},
		{"finished without an end is never open-ended", "finished", `"period": {"start": "2025-01-01T10:00:00Z"}`,
			"encounter Patient/52 Practitioner/p2 Organization/o1 Encounter/e1 [2025-01-01T11:00:00Z,2025-01-01T11:30:01Z) id\n"},
		{"a participant outside the encounter's period", "finished", `"period": {"start": "2025-01-01T08:00:00Z", "end": "2025-01-01T09:00:00Z"}`,
			"encounter Patient/52 Practitioner/p1 Organization/o1 Encounter/e1 [2025-01-01T08:00:00Z,2025-01-01T09:00:01Z) id\n"},
		{"a day's precision ends after the day", "completed", `"period": {"start": "2025-01-01", "end": "2025-01-01"}`,
			"encounter Patient/52 Practitioner/p1 Organization/o1 Encounter/e1 [2025-01-01T00:00:00Z,2025-01-02T00:00:00Z) id\n" +
				"encounter Patient/52 Practitioner/p2 Organization/o1 Encounter/e1 [2025-01-01T11:00:00Z,2025-01-01T11:30:01Z) id\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srcs, err := read(t, encounter(tt.status, tt.period))
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(srcs[0].Relationships); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	_ = day
}

func TestRefused(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc, msg string }{
		{"group subject", strings.Replace(fmt.Sprintf(careTeam, "active"), "Patient/52", "Group/g1", 1), "subject"},
		{"no subject", `{"resourceType": "Encounter", "id": "e1", "status": "in-progress"}`, "subject"},
		{"no id", `{"resourceType": "Encounter", "status": "in-progress", "subject": {"reference": "Patient/1"}}`, "id"},
		{"end before start", encounter("in-progress", `"period": {"start": "2025-02-01", "end": "2025-01-01"}`), "period.end"},
		{"bad date", encounter("in-progress", `"period": {"start": "yesterday"}`), "period.start"},
		{"bad participant period", strings.Replace(encounter("in-progress", ""), `"start": "2025-01-01T11:00:00Z"`, `"start": "2025-13-01"`, 1), "participant[1].period"},
		{"bad id for a reference", `{"resourceType": "CareTeam", "id": "ct 1", "subject": {"reference": "Patient/1"}, "participant": [{"member": {"reference": "Practitioner/p1"}}]}`, "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := read(t, tt.doc)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want one naming %s", err, tt.msg)
			}
		})
	}
}

func TestNDJSON(t *testing.T) {
	t.Parallel()
	nd := strings.ReplaceAll(encounter("in-progress", ""), "\n", " ") + "\n" + strings.ReplaceAll(fmt.Sprintf(careTeam, "active"), "\n", " ") + "\n"
	srcs, err := read(t, nd)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || srcs[0].Ref != "Encounter/e1" || srcs[1].Ref != "CareTeam/ct1" {
		t.Fatalf("sources %+v", srcs)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(careTeam, "active")))
	f.Add([]byte(encounter("finished", `"period": {"start": "2025-01-01", "end": "2025-01-02"}`)))
	f.Add([]byte(role))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := treating.NewReader()
		if r.Add("fuzz", data) != nil {
			return
		}
		srcs, err := r.Sources()
		if err != nil {
			return
		}
		for _, s := range srcs {
			for _, rel := range s.Relationships {
				if err := rel.Validate(); err != nil || rel.Patient != s.Patient || rel.Source != s.Ref {
					t.Fatalf("invalid relationship %+v: %v", rel, err)
				}
			}
		}
	})
}
