package proxy_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestSearchReleasesExactlyTheAllowed: for generated search pages of
// resources of either tenant, with or without a sensitive label, a care
// coordinator of o1 gets exactly the entries the reference bundle lets it
// see (its types, its tenant, no sensitive label), in their order, each
// masked, and nothing else; total is gone whenever something was left out.
func TestSearchReleasesExactlyTheAllowed(t *testing.T) {
	t.Parallel()
	r := newRig(t, map[string]string{}, "")
	r.token = r.sign(t, map[string]any{"fhirUser": "Practitioner/c1", "roles": "care-coordinator", "org": "Organization/o1"})
	types := []string{"Encounter", "CareTeam", "Observation", "Condition", "Patient"}
	readable := []string{"Encounter", "CareTeam", "Patient"}
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 12).Draw(rt, "n")
		var entries []string
		var want []string
		for i := range n {
			typ := rapid.SampledFrom(types).Draw(rt, "type")
			org := rapid.SampledFrom([]string{"o1", "o2"}).Draw(rt, "org")
			label := rapid.SampledFrom([]string{"", "HIV", "R", "N"}).Draw(rt, "label")
			id := fmt.Sprintf("r%d", i)
			patient := "Patient/" + rapid.SampledFrom([]string{"p1", "p2"}).Draw(rt, "patient")
			if typ == "Patient" {
				id, patient = fmt.Sprintf("p%d", i), "Patient/"+fmt.Sprintf("p%d", i)
			}
			body := res(typ, id, org, patient, `,"reasonCode":[{"text":"why"}]`)
			if label != "" {
				sys := "http://terminology.hl7.org/CodeSystem/v3-ActCode"
				if label == "R" || label == "N" {
					sys = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
				}
				body = strings.Replace(body, `"meta":{`, `"meta":{"security":[{"system":"`+sys+`","code":"`+label+`"}],`, 1)
			}
			entries = append(entries, `{"resource":`+body+`}`)
			if slices.Contains(readable, typ) && org == "o1" && (label == "" || label == "N") {
				want = append(want, typ+"/"+id)
			}
		}
		r.fhir.set("GET /Encounter?status=finished", `{"resourceType":"Bundle","type":"searchset","total":`+fmt.Sprint(n)+`,"entry":[`+strings.Join(entries, ",")+`]}`)
		got := r.do(t, "GET", "/Encounter?status=finished", "")
		if got.status != 200 {
			rt.Fatalf("%d %s", got.status, got.body)
		}
		var b struct {
			Total *int
			Entry []struct{ Resource map[string]any }
		}
		if err := json.Unmarshal([]byte(got.body), &b); err != nil {
			rt.Fatal(err)
		}
		var released []string
		for _, e := range b.Entry {
			released = append(released, fmt.Sprint(e.Resource["resourceType"], "/", e.Resource["id"]))
			if e.Resource["resourceType"] == "Encounter" && e.Resource["reasonCode"] != nil {
				rt.Errorf("Encounter %v released with its reasonCode", e.Resource["id"])
			}
		}
		if !slices.Equal(released, want) {
			rt.Fatalf("released %v, want %v", released, want)
		}
		if (len(want) < n) != (b.Total == nil) {
			rt.Fatalf("total %v with %d of %d released", b.Total, len(want), n)
		}
	})
}

// TestEveryPatientMustAllow: a resource in several patients' compartments
// is released only when the decision for each patient allows it.
func TestEveryPatientMustAllow(t *testing.T) {
	t.Parallel()
	appt := func(id string, patients ...string) string {
		var ps []string
		for _, p := range patients {
			ps = append(ps, `{"actor":{"reference":"`+p+`"},"status":"accepted"}`)
		}
		return `{"resourceType":"Appointment","id":"` + id + `","status":"booked","participant":[` + strings.Join(ps, ",") + `]}`
	}
	r := newRig(t, map[string]string{
		"GET /Appointment?patient=Patient/p1": `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + appt("own", "Patient/p1") + `},{"resource":` + appt("shared", "Patient/p1", "Patient/p2") + `}]}`,
	}, "")
	r.token = r.sign(t, map[string]any{"fhirUser": "Patient/p1", "roles": "patient"})
	got := r.do(t, "GET", "/Appointment?patient=Patient/p1", "")
	if got.status != 200 || !strings.Contains(got.body, `"id":"own"`) || strings.Contains(got.body, `"id":"shared"`) {
		t.Errorf("appointments: %d %s", got.status, got.body)
	}
	if ids := strings.Split(got.header.Get("X-Chaperone-Decision-Ids"), ","); len(ids) != 4 {
		t.Errorf("decisions %v, want the request phase, one for own and one per patient of shared", ids)
	}
}
