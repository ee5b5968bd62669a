package fhirserver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sensitive are the labels the reference bundle segments.
var sensitive = []string{"ETH", "ETHUD", "SUD", "HIV", "PSY", "PSYTHPN", "SDV", "SEX", "R", "V"}

// seed loads the FHIR server directly: two organizations, a practitioner
// of each, patients p1 and p2 of o1 and p3 of o2, and for each patient
// Observations, Conditions and Encounters with and without sensitive
// labels, and a CareTeam.
func seed(t testing.TB, upstream string) {
	t.Helper()
	tag := func(org string) string {
		return `"meta":{"tag":[{"system":"` + tenantSystem + `","code":"` + org + `"}]`
	}
	label := func(org, code string) string {
		sys := "http://terminology.hl7.org/CodeSystem/v3-ActCode"
		if code == "R" {
			sys = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
		}
		return tag(org) + `,"security":[{"system":"` + sys + `","code":"` + code + `"}]`
	}
	var rs []string
	for _, org := range []string{"o1", "o2"} {
		rs = append(rs, `{"resourceType":"Organization","id":"`+org+`",`+tag(org)+`},"name":"Org `+org+`"}`)
	}
	rs = append(rs, `{"resourceType":"Practitioner","id":"d1",`+tag("o1")+`},"name":[{"family":"One"}]}`,
		`{"resourceType":"Practitioner","id":"d2",`+tag("o2")+`},"name":[{"family":"Two"}]}`)
	for _, p := range []struct{ id, org, doc string }{{"p1", "o1", "d1"}, {"p2", "o1", "d1"}, {"p3", "o2", "d2"}} {
		subj := `"subject":{"reference":"Patient/` + p.id + `"}`
		rs = append(rs,
			`{"resourceType":"Patient","id":"`+p.id+`",`+tag(p.org)+`},"name":[{"family":"Fam-`+p.id+`"}],"telecom":[{"system":"phone","value":"555"}],"maritalStatus":{"text":"M"},"managingOrganization":{"reference":"Organization/`+p.org+`"}}`,
			`{"resourceType":"Observation","id":"obs-`+p.id+`",`+tag(p.org)+`},"status":"final","code":{"text":"plain"},`+subj+`,"valueQuantity":{"value":1.50,"unit":"mg"}}`,
			`{"resourceType":"Observation","id":"obs-`+p.id+`-hiv",`+label(p.org, "HIV")+`},"status":"final","code":{"text":"hiv"},`+subj+`}`,
			`{"resourceType":"Condition","id":"cond-`+p.id+`",`+tag(p.org)+`},"code":{"text":"plain"},`+subj+`}`,
			`{"resourceType":"Condition","id":"cond-`+p.id+`-psy",`+label(p.org, "PSY")+`},"code":{"text":"psy"},`+subj+`}`,
			`{"resourceType":"Encounter","id":"enc-`+p.id+`",`+tag(p.org)+`},"status":"finished","class":{"code":"AMB"},`+subj+`,"reasonCode":[{"text":"secret reason"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">secret reason</div>"}}`,
			`{"resourceType":"Encounter","id":"enc-`+p.id+`-r",`+label(p.org, "R")+`},"status":"finished","class":{"code":"AMB"},`+subj+`}`,
			`{"resourceType":"CareTeam","id":"ct-`+p.id+`",`+tag(p.org)+`},`+subj+`,"participant":[{"member":{"reference":"Practitioner/`+p.doc+`"}}]}`,
		)
		for i := range 5 {
			rs = append(rs, fmt.Sprintf(`{"resourceType":"Observation","id":"obs-%s-%d",%s},"status":"final","code":{"text":"series"},%s}`, p.id, i, tag(p.org), subj))
		}
	}
	for _, r := range rs {
		put(t, upstream, r)
	}
}

// put stores a resource on the FHIR server directly.
func put(t testing.TB, upstream, r string) {
	t.Helper()
	var head struct{ ResourceType, ID string }
	if err := json.Unmarshal([]byte(r), &head); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	req, _ := http.NewRequest(http.MethodPut, upstream+"/"+head.ResourceType+"/"+head.ID, strings.NewReader(r))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("seed %s/%s: %d %s", head.ResourceType, head.ID, resp.StatusCode, b)
	}
}

// user is an end user calling through the proxy, with the invariants
// every answer it gets must hold.
type user struct {
	t      *testing.T
	s      *stack
	name   string
	token  string
	check  func(res map[string]any) string // "" when the resource may be shown to the user
	ids    *[]string
	client *http.Client
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (u *user) do(method, path string, body string, h ...string) answer {
	u.t.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = u.s.proxy + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if u.token != "" {
		req.Header.Set("Authorization", u.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			u.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/fhir+json" {
			u.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	for _, id := range strings.Split(resp.Header.Get("X-Chaperone-Decision-Ids"), ",") {
		if id != "" {
			*u.ids = append(*u.ids, id)
		}
	}
	walk(a.body, func(res map[string]any) {
		if why := u.check(res); why != "" {
			u.t.Errorf("%s: %s %s released %s/%v: %s", u.name, method, path, res["resourceType"], res["id"], why)
		}
	})
	return a
}

// walk calls f on every resource anywhere in v (entries, contained,
// nested Bundles).
func walk(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["resourceType"].(string); ok {
			f(x)
		}
		for _, e := range x {
			walk(e, f)
		}
	case []any:
		for _, e := range x {
			walk(e, f)
		}
	}
}

func tenantOf(res map[string]any) string {
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		c, _ := t.(map[string]any)
		if c["system"] == tenantSystem {
			s, _ := c["code"].(string)
			return s
		}
	}
	return ""
}

func labelsOf(res map[string]any) []string {
	meta, _ := res["meta"].(map[string]any)
	sec, _ := meta["security"].([]any)
	var out []string
	for _, s := range sec {
		c, _ := s.(map[string]any)
		code, _ := c["code"].(string)
		out = append(out, code)
	}
	return out
}

// data types are the resource types that carry tenant data (Bundle and
// OperationOutcome do not).
func data(res map[string]any) bool {
	t := res["resourceType"]
	return t != "Bundle" && t != "OperationOutcome"
}

func entries(b map[string]any) []map[string]any {
	es, _ := b["entry"].([]any)
	var out []map[string]any
	for _, e := range es {
		m, _ := e.(map[string]any)
		out = append(out, m)
	}
	return out
}

func resources(b map[string]any) map[string]bool {
	out := map[string]bool{}
	for _, e := range entries(b) {
		if r, ok := e["resource"].(map[string]any); ok {
			out[fmt.Sprint(r["resourceType"], "/", r["id"])] = true
		}
	}
	return out
}

func codesOf(a answer) []string {
	var out []string
	walk(a.body, func(r map[string]any) {
		if r["resourceType"] != "OperationOutcome" {
			return
		}
		for _, is := range r["issue"].([]any) {
			d := is.(map[string]any)["details"].(map[string]any)
			for _, c := range d["coding"].([]any) {
				out = append(out, c.(map[string]any)["code"].(string))
			}
		}
	})
	return out
}

func nextLink(b map[string]any) string {
	links, _ := b["link"].([]any)
	for _, l := range links {
		m := l.(map[string]any)
		if m["relation"] == "next" {
			return m["url"].(string)
		}
	}
	return ""
}

// TestProxyInFrontOfMedplum drives reads, searches with _include and
// _revinclude, paging, history, writes, batch and transaction through the
// proxy in front of a real FHIR server, as a clinician and a care
// coordinator of organization o1, and asserts after every answer that no
// resource of the other organization, no resource the user may not see
// (a sensitive label for the coordinator) and no masked element ever
// appears; every decision the proxy names is in the PDP's audit log.
func TestProxyInFrontOfMedplum(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	seed(t, s.upstream)
	importCareTeams(t, s)
	var ids []string
	hc := &http.Client{Timeout: 30 * time.Second}
	clin := &user{t: t, s: s, name: "clinician", ids: &ids, client: hc,
		token: s.token(t, map[string]any{"fhirUser": "Practitioner/d1", "roles": "clinician", "org": "Organization/o1"}),
		check: func(r map[string]any) string {
			if data(r) && tenantOf(r) != "o1" {
				return "not of organization o1"
			}
			return ""
		}}
	coord := &user{t: t, s: s, name: "coordinator", ids: &ids, client: hc,
		token: s.token(t, map[string]any{"fhirUser": "Practitioner/c1", "roles": "care-coordinator", "org": "Organization/o1"}),
		check: func(r map[string]any) string {
			if !data(r) {
				return ""
			}
			switch {
			case tenantOf(r) != "o1":
				return "not of organization o1"
			case slices.ContainsFunc(labelsOf(r), func(l string) bool { return slices.Contains(sensitive, l) }):
				return "a sensitive resource"
			case !slices.Contains([]string{"Appointment", "CarePlan", "CareTeam", "Coverage", "Encounter", "Patient", "ServiceRequest"}, r["resourceType"].(string)):
				return "a type the coordinator may not read"
			case r["resourceType"] == "Encounter" && (r["reasonCode"] != nil || r["diagnosis"] != nil || r["text"] != nil):
				return "a masked element"
			case r["resourceType"] == "Encounter" && !slices.Contains(labelsOf(r), "REDACTED"):
				return "masked without the REDACTED label"
			}
			return ""
		}}
	pat := &user{t: t, s: s, name: "patient", ids: &ids, client: hc,
		token: s.token(t, map[string]any{"fhirUser": "Patient/p1", "roles": "patient"}),
		check: func(r map[string]any) string {
			if !data(r) {
				return ""
			}
			if r["resourceType"] == "Patient" && r["id"] != "p1" {
				return "another patient"
			}
			if subj, ok := r["subject"].(map[string]any); ok && subj["reference"] != "Patient/p1" {
				return "another patient's record"
			}
			return ""
		}}
	anon := &user{t: t, s: s, name: "anonymous", ids: &ids, client: hc, check: func(r map[string]any) string {
		if data(r) {
			return "anything"
		}
		return ""
	}}
	direct := func(path string) map[string]any {
		resp, err := hc.Get(s.upstream + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	upstreamHas := func(codeText string) bool {
		found := false
		walk(direct("/Observation?_count=1000"), func(r map[string]any) {
			if c, _ := r["code"].(map[string]any); c != nil && c["text"] == codeText {
				found = true
			}
		})
		return found
	}

	t.Run("read", func(t *testing.T) {
		a := clin.do("GET", "/Observation/obs-p1", "")
		if a.status != 200 || a.body["id"] != "obs-p1" || a.header.Get("X-Chaperone-Decision-Id") == "" || len(strings.Split(a.header.Get("X-Chaperone-Decision-Ids"), ",")) < 2 {
			t.Errorf("own read: %d %v %s", a.status, a.header, a.raw)
		}
		if a := clin.do("GET", "/Observation/obs-p1-hiv", ""); a.status != 200 || !strings.Contains(a.header.Get("X-Chaperone-Audit-Tags"), "SENSITIVE") {
			t.Errorf("sensitive read in own organization for TREAT: %d %v", a.status, a.header)
		}
		if a := clin.do("GET", "/Observation/obs-p3", ""); a.status != 403 || !slices.Contains(codesOf(a), "TENANT_MISMATCH") {
			t.Errorf("other organization: %d %s", a.status, a.raw)
		}
		if a := coord.do("GET", "/Encounter/enc-p1-r", ""); a.status != 403 {
			t.Errorf("coordinator, restricted encounter: %d %s", a.status, a.raw)
		}
		if a := coord.do("GET", "/Encounter/enc-p1", ""); a.status != 200 {
			t.Errorf("coordinator, encounter: %d %s", a.status, a.raw)
		}
		if a := coord.do("GET", "/Observation/obs-p1", ""); a.status != 403 {
			t.Errorf("coordinator, observation: %d %s", a.status, a.raw)
		}
		if a := anon.do("GET", "/Patient/p1", ""); a.status != 401 || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("no token: %d %s", a.status, a.raw)
		}
		if a := clin.do("GET", "/Observation/nope", ""); a.status != 404 {
			t.Errorf("missing: %d %s", a.status, a.raw)
		}
	})

	t.Run("search pages with _include", func(t *testing.T) {
		seen := map[string]bool{}
		page := "/Observation?_count=4&_include=Observation:subject"
		pages := 0
		for page != "" && pages < 20 {
			pages++
			a := clin.do("GET", page, "")
			if a.status != 200 {
				t.Fatalf("page %d: %d %s", pages, a.status, a.raw)
			}
			if _, ok := a.body["total"]; ok {
				t.Errorf("page %d keeps total", pages)
			}
			for k := range resources(a.body) {
				seen[k] = true
			}
			page = nextLink(a.body)
			if page != "" && !strings.HasPrefix(page, s.proxy+"/") {
				t.Fatalf("next link %q does not lead to the proxy", page)
			}
		}
		for _, want := range []string{"Observation/obs-p1", "Observation/obs-p2-hiv", "Observation/obs-p2-4", "Patient/p1", "Patient/p2"} {
			if !seen[want] {
				t.Errorf("%s not found over %d pages", want, pages)
			}
		}
		if seen["Patient/p3"] || seen["Observation/obs-p3"] {
			t.Errorf("another organization's resources released")
		}
		if pages < 5 {
			t.Errorf("%d pages, want the 21 observations over at least 5 pages", pages)
		}
	})

	t.Run("search with _revinclude", func(t *testing.T) {
		a := coord.do("GET", "/Patient?_revinclude=Observation:subject&_revinclude=Encounter:subject", "")
		got := resources(a.body)
		if a.status != 200 || !got["Patient/p1"] || !got["Encounter/enc-p1"] || got["Encounter/enc-p1-r"] || a.header.Get("X-Chaperone-Withheld") == "" {
			t.Errorf("%d %v withheld %q", a.status, got, a.header.Get("X-Chaperone-Withheld"))
		}
		if _, ok := a.body["total"]; ok {
			t.Error("total kept although entries were withheld")
		}
		// A page emptied by filtering keeps its next link.
		a = clin.do("GET", "/Observation?subject=Patient/p3&_count=2", "")
		if a.status != 200 || len(entries(a.body)) != 0 || nextLink(a.body) == "" {
			t.Errorf("emptied page: %d %s", a.status, a.raw)
		}
	})

	t.Run("compartment search", func(t *testing.T) {
		a := clin.do("GET", "/Patient/p1/Observation?_count=50", "")
		got := resources(a.body)
		if a.status != 200 || len(got) != 7 || !got["Observation/obs-p1-hiv"] {
			t.Errorf("%d %v", a.status, got)
		}
		a = coord.do("GET", "/Patient/p1/Encounter", "")
		if got := resources(a.body); a.status != 200 || !got["Encounter/enc-p1"] || got["Encounter/enc-p1-r"] {
			t.Errorf("%d %v", a.status, got)
		}
		a = coord.do("GET", "/Patient/p3/Encounter", "")
		if got := resources(a.body); a.status != 200 || len(got) != 0 || a.header.Get("X-Chaperone-Withheld") != "2" {
			t.Errorf("another tenant's compartment: %d %v %v", a.status, got, a.header)
		}
	})

	t.Run("patient", func(t *testing.T) {
		if a := pat.do("GET", "/Patient/p1", ""); a.status != 200 {
			t.Errorf("own record: %d %s", a.status, a.raw)
		}
		a := pat.do("GET", "/Patient/p1/Observation?_count=50&_include=Observation:subject", "")
		if got := resources(a.body); a.status != 200 || len(got) != 8 {
			t.Errorf("own observations: %d %v", a.status, got)
		}
		for _, path := range []string{"/Patient/p2", "/Patient/p2/Observation", "/Observation?patient=Patient/p2", "/Observation/obs-p2"} {
			if a := pat.do("GET", path, ""); a.status != 403 {
				t.Errorf("%s: %d %s", path, a.status, a.raw)
			}
		}
	})

	t.Run("history", func(t *testing.T) {
		put := func(body string) {
			req, _ := http.NewRequest("PUT", s.upstream+"/Encounter/enc-p2", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/fhir+json")
			resp, err := hc.Do(req)
			if err != nil || resp.StatusCode >= 300 {
				t.Fatalf("put: %v %v", err, resp)
			}
			resp.Body.Close()
		}
		sec := `"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]`
		put(`{"resourceType":"Encounter","id":"enc-p2","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}],` + sec + `},"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p2"}}`)
		put(`{"resourceType":"Encounter","id":"enc-p2","meta":{"tag":[{"system":"` + tenantSystem + `","code":"o1"}]},"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p2"},"reasonCode":[{"text":"again"}]}`)
		a := coord.do("GET", "/Encounter/enc-p2/_history", "")
		if n := len(entries(a.body)); a.status != 200 || n != 2 || a.header.Get("X-Chaperone-Withheld") != "1" {
			t.Errorf("history: %d, %d versions released (want 2 of 3) %s", a.status, n, a.raw)
		}
		if a := clin.do("GET", "/_history", ""); a.status != 403 || !slices.Contains(codesOf(a), "UNSUPPORTED_INTERACTION") {
			t.Errorf("system history: %d %s", a.status, a.raw)
		}
	})

	t.Run("writes", func(t *testing.T) {
		obs := func(id, org, patient string) string {
			return `{"resourceType":"Observation","id":"` + id + `","meta":{"tag":[{"system":"` + tenantSystem + `","code":"` + org + `"}]},"status":"amended","code":{"text":"plain"},"subject":{"reference":"Patient/` + patient + `"}}`
		}
		if a := clin.do("PUT", "/Observation/obs-p1", obs("obs-p1", "o1", "p1")); a.status != 200 || a.header.Get("ETag") == "" {
			t.Errorf("update: %d %s", a.status, a.raw)
		}
		if a := clin.do("PUT", "/Observation/obs-p3", obs("obs-p3", "o1", "p1")); a.status != 403 {
			t.Errorf("update of another organization's resource: %d %s", a.status, a.raw)
		}
		if a := clin.do("PUT", "/Observation/obs-p1", obs("obs-p1", "o2", "p3")); a.status != 403 {
			t.Errorf("update moving a resource to another organization: %d %s", a.status, a.raw)
		}
		if a := clin.do("PUT", "/Observation/obs-p1", obs("obs-p1", "o1", "p1"), "If-Match", `W/"stale"`); a.status != 412 {
			t.Errorf("stale If-Match: %d %s", a.status, a.raw)
		}
		if a := clin.do("POST", "/Observation", obs("new", "o2", "p3")); a.status != 403 {
			t.Errorf("create in another organization: %d %s", a.status, a.raw)
		}
		if a := clin.do("POST", "/Observation", `{"resourceType":"Observation","meta":{"tag":[{"system":"`+tenantSystem+`","code":"o1"}]},"status":"final","code":{"text":"created"},"subject":{"reference":"Patient/p1"}}`); a.status != 201 || !strings.HasPrefix(a.header.Get("Location"), s.proxy+"/Observation/") {
			t.Errorf("create: %d %v %s", a.status, a.header, a.raw)
		}
		if a := clin.do("PATCH", "/Observation/obs-p2", `[{"op":"replace","path":"/status","value":"corrected"}]`, "Content-Type", "application/json-patch+json"); a.status != 200 {
			t.Errorf("patch: %d %s", a.status, a.raw)
		}
		if a := clin.do("PATCH", "/Observation/obs-p2", `[{"op":"replace","path":"/meta/tag/0/code","value":"o2"}]`, "Content-Type", "application/json-patch+json"); a.status != 403 {
			t.Errorf("patch moving to another organization: %d %s", a.status, a.raw)
		}
		if a := clin.do("DELETE", "/Observation/obs-p3", ""); a.status != 403 {
			t.Errorf("delete in another organization: %d %s", a.status, a.raw)
		}
		if r := direct("/Observation/obs-p3"); r["id"] != "obs-p3" || r["status"] != "final" {
			t.Errorf("obs-p3 changed upstream: %v", r)
		}
		if r := direct("/Observation/obs-p2"); r["status"] != "corrected" || tenantOf(r) != "o1" {
			t.Errorf("obs-p2 upstream: %v", r)
		}
		if a := clin.do("POST", "/Observation", obs("x", "o1", "p1"), "If-None-Exist", "identifier=1"); a.status != 403 || !slices.Contains(codesOf(a), "CONDITIONAL") {
			t.Errorf("conditional create: %d %s", a.status, a.raw)
		}
	})

	t.Run("batch", func(t *testing.T) {
		entry := func(method, url, res string) string {
			e := `{"request":{"method":"` + method + `","url":"` + url + `"}`
			if res != "" {
				e += `,"resource":` + res
			}
			return e + "}"
		}
		newObs := func(org, patient, text string) string {
			return `{"resourceType":"Observation","meta":{"tag":[{"system":"` + tenantSystem + `","code":"` + org + `"}]},"status":"final","code":{"text":"` + text + `"},"subject":{"reference":"Patient/` + patient + `"}}`
		}
		body := `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join([]string{
			entry("GET", "Patient/p1", ""),
			entry("GET", "Patient/p3", ""),
			entry("GET", "Claim/c1", ""),
			entry("POST", "Observation", newObs("o1", "p1", "batch-ok")),
			entry("POST", "Observation", newObs("o2", "p3", "batch-denied")),
			entry("GET", "Observation?_count=100", ""),
		}, ",") + `]}`
		a := clin.do("POST", "", body)
		es := entries(a.body)
		if a.status != 200 || a.body["type"] != "batch-response" || len(es) != 6 {
			t.Fatalf("batch: %d %s", a.status, a.raw)
		}
		var status []string
		for _, e := range es {
			r, _ := e["response"].(map[string]any)
			st, _ := r["status"].(string)
			status = append(status, strings.Fields(st + " ?")[0])
		}
		if want := []string{"200", "403", "403", "201", "403", "200"}; !slices.Equal(status, want) {
			t.Errorf("statuses %v, want %v", status, want)
		}
		if !upstreamHas("batch-ok") || upstreamHas("batch-denied") {
			t.Errorf("upstream: batch-ok %v, batch-denied %v (want true, false)", upstreamHas("batch-ok"), upstreamHas("batch-denied"))
		}
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + entry("POST", "Observation", newObs("o1", "p1", "tx-1")) + "," + entry("POST", "Observation", newObs("o2", "p3", "tx-2")) + `]}`
		if a := clin.do("POST", "", tx); a.status != 403 {
			t.Errorf("transaction with a denied entry: %d %s", a.status, a.raw)
		}
		if upstreamHas("tx-1") || upstreamHas("tx-2") {
			t.Error("a refused transaction reached the upstream")
		}
		tx = `{"resourceType":"Bundle","type":"transaction","entry":[` + entry("POST", "Observation", newObs("o1", "p1", "tx-3")) + "," + entry("GET", "Encounter/enc-p1", "") + `]}`
		if a := clin.do("POST", "", tx); a.status != 200 || a.body["type"] != "transaction-response" || !upstreamHas("tx-3") {
			t.Errorf("transaction: %d %s", a.status, a.raw)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			status       int
			code         string
		}{
			{"POST", "/$graphql", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Patient?_has:Observation:subject:code=x", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Observation?subject.name=x", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Observation?_include=*", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Observation?_summary=count", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Observation?_total=accurate", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Observation?_elements=code", 403, "UNSUPPORTED_INTERACTION"},
			{"GET", "/Observation?_format=xml", 406, "UNSUPPORTED_FORMAT"},
			{"GET", "/Observation/a%2Fb", 403, "ENCODED_SLASH"},
		} {
			if a := clin.do(tc.method, tc.path, ""); a.status != tc.status || !slices.Contains(codesOf(a), tc.code) {
				t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, a.status, a.raw, tc.status, tc.code)
			}
		}
		if a := clin.do("GET", "/Observation/obs-p1", "", "Accept", "application/fhir+xml"); a.status != 406 {
			t.Errorf("XML: %d", a.status)
		}
	})

	// Every decision the proxy named is in the PDP's audit log.
	deadline := time.Now().Add(20 * time.Second)
	for {
		log, _ := os.ReadFile(s.auditFile)
		missing := 0
		for _, id := range ids {
			if !bytes.Contains(log, []byte(id)) {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("%d decisions, all in the audit log", len(ids))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d decisions not in the audit log", missing, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// importCareTeams gives the PDP the treating relationships of the seeded
// CareTeams (d1 treats p1 and p2, d2 treats p3) with the real
// `chaperone relationships import`: the reference bundle lets a clinician
// read sensitive data only of patients it treats.
func importCareTeams(t testing.TB, s *stack) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, p := range []struct{ id, doc string }{{"p1", "d1"}, {"p2", "d1"}, {"p3", "d2"}} {
		entries = append(entries, `{"resource":{"resourceType":"CareTeam","id":"ct-`+p.id+`","status":"active","subject":{"reference":"Patient/`+p.id+`"},"participant":[{"member":{"reference":"Practitioner/`+p.doc+`"}}]}}`)
	}
	f := filepath.Join(t.TempDir(), "careteams.json")
	if err := os.WriteFile(f, []byte(`{"resourceType":"Bundle","type":"collection","entry":[`+strings.Join(entries, ",")+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "relationships", "import", "--file", f, "--addr", s.pdp).CombinedOutput(); err != nil {
		t.Fatalf("relationships import: %v: %s", err, out)
	}
}
