package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRefusedNeverReachesUpstream: what the mapper, the token check, the
// request-phase decision or the proxy itself refuses is answered with an
// OperationOutcome naming the reason and never reaches the FHIR server.
func TestRefusedNeverReachesUpstream(t *testing.T) {
	t.Parallel()
	r := newRig(t, map[string]string{}, "")
	tests := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code                     string
	}{
		{"graphql", "POST", "/$graphql", `{}`, nil, 403, "UNSUPPORTED_INTERACTION"},
		{"reverse chain", "GET", "/Patient?_has:Observation:subject:code=x", "", nil, 403, "REVERSE_CHAIN"},
		{"chained", "GET", "/Observation?subject.name=x", "", nil, 403, "CHAINED_PARAMETER"},
		{"include wildcard", "GET", "/Observation?_include=*", "", nil, 403, "UNSAFE_INCLUDE"},
		{"summary count", "GET", "/Observation?_summary=count", "", nil, 403, "SUMMARY_COUNT"},
		{"summary true", "GET", "/Observation?_summary=true", "", nil, 403, "SUMMARY"},
		{"total accurate", "GET", "/Observation?_total=accurate", "", nil, 403, "TOTAL_ACCURATE"},
		{"elements", "GET", "/Observation/o1?_elements=code", "", nil, 403, "ELEMENTS"},
		{"system history", "GET", "/_history", "", nil, 403, "UNSUPPORTED_INTERACTION"},
		{"export", "GET", "/Patient/$export", "", nil, 403, "EXPORT"},
		{"operation by POST", "POST", "/Observation/o1/$meta-delete", `{"resourceType":"Parameters"}`, nil, 403, "OPERATION_POST"},
		{"xml format", "GET", "/Observation/o1?_format=xml", "", nil, 406, "UNSUPPORTED_FORMAT"},
		{"xml accept", "GET", "/Observation/o1", "", []string{"Accept", "application/fhir+xml"}, 406, "UNSUPPORTED_FORMAT"},
		{"xml body", "POST", "/Observation", `<Observation/>`, []string{"Content-Type", "application/fhir+xml"}, 415, "UNSUPPORTED_FORMAT"},
		{"conditional create", "POST", "/Observation", `{"resourceType":"Observation"}`, []string{"If-None-Exist", "identifier=x"}, 403, "CONDITIONAL"},
		{"conditional update", "PUT", "/Observation?identifier=x", `{"resourceType":"Observation"}`, nil, 403, "CONDITIONAL"},
		{"method override", "GET", "/Observation/o1", "", []string{"X-HTTP-Method-Override", "DELETE"}, 403, "METHOD_OVERRIDE"},
		{"encoded slash", "GET", "/Observation/a%2Fb", "", nil, 403, "ENCODED_SLASH"},
		{"request-phase deny", "GET", "/Claim/c1", "", nil, 403, "NO_PERMIT"},
		{"no token", "GET", "/Observation/o1", "", []string{"Authorization", ""}, 401, "UNAUTHENTICATED"},
		{"bad token", "GET", "/Observation/o1", "", []string{"Authorization", "Bearer x.y.z"}, 401, "UNAUTHENTICATED"},
		{"transaction with a refused entry", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Claim/c1"}},{"request":{"method":"GET","url":"Observation/o1"}}]}`, nil, 403, "NO_PERMIT"},
	}
	for _, tc := range tests {
		got := r.do(t, tc.method, tc.path, tc.body, tc.header...)
		if got.status != tc.status || got.header.Get("Content-Type") != "application/fhir+json" || !strings.Contains(got.body, `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d naming %s", tc.name, got.status, got.body, tc.status, tc.code)
		}
		if !strings.Contains(got.body, `"resourceType":"OperationOutcome"`) {
			t.Errorf("%s: not an OperationOutcome: %s", tc.name, got.body)
		}
	}
	if hits := r.fhir.reached(); len(hits) != 0 {
		t.Errorf("refused requests reached the FHIR server: %v", hits)
	}
}

// TestPDPUnreachable: without the PDP nothing is forwarded.
func TestPDPUnreachable(t *testing.T) {
	t.Parallel()
	r := newRig(t, map[string]string{"GET /Observation/o1": res("Observation", "o1", "o1", "Patient/p1", "")}, "http://127.0.0.1:1")
	got := r.do(t, "GET", "/Observation/o1", "")
	if got.status != 403 || !strings.Contains(got.body, "PDP_UNAVAILABLE") {
		t.Errorf("%d %s, want 403 PDP_UNAVAILABLE", got.status, got.body)
	}
	if hits := r.fhir.reached(); len(hits) != 0 {
		t.Errorf("reached the FHIR server: %v", hits)
	}
}

// TestCompartmentSearchPage: every entry of a page is decided on its own
// attributes; denied ones are removed, OperationOutcome entries pass,
// total goes, links lead to the proxy, a foreign link is dropped.
func TestCompartmentSearchPage(t *testing.T) {
	t.Parallel()
	page := `{"resourceType":"Bundle","type":"searchset","total":3,"link":[
		{"relation":"self","url":"UPSTREAM/Patient/p1/Observation?_count=3"},
		{"relation":"next","url":"UPSTREAM/Patient/p1/Observation?_count=3&_offset=3"},
		{"relation":"alternate","url":"http://elsewhere.test/fhir/Observation"}],
		"entry":[
		{"fullUrl":"UPSTREAM/Observation/a","resource":` + res("Observation", "a", "o1", "Patient/p1", "") + `,"search":{"mode":"match"}},
		{"fullUrl":"UPSTREAM/Observation/b","resource":` + res("Observation", "b", "o2", "Patient/p1", "") + `,"search":{"mode":"match"}},
		{"fullUrl":"UPSTREAM/Patient/p3","resource":` + res("Patient", "p3", "o2", "Patient/p3", "") + `,"search":{"mode":"include"}},
		{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"informational"}]},"search":{"mode":"outcome"}}]}`
	r := newRig(t, map[string]string{"GET /Patient/p1/Observation?_include=Observation:subject": page}, "")
	got := r.do(t, "GET", "/Patient/p1/Observation?_include=Observation:subject", "")
	if got.status != 200 {
		t.Fatalf("%d %s", got.status, got.body)
	}
	var b struct {
		Total *int `json:"total"`
		Link  []struct{ Relation, URL string }
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		}
	}
	if err := json.Unmarshal([]byte(got.body), &b); err != nil {
		t.Fatal(err)
	}
	if b.Total != nil || len(b.Entry) != 2 || b.Entry[0].Resource["id"] != "a" || b.Entry[1].Resource["resourceType"] != "OperationOutcome" {
		t.Errorf("entries %+v total %v", b.Entry, b.Total)
	}
	if b.Entry[0].FullURL != r.url+"/Observation/a" {
		t.Errorf("fullUrl %q", b.Entry[0].FullURL)
	}
	if len(b.Link) != 2 || b.Link[1].URL != r.url+"/Patient/p1/Observation?_count=3&_offset=3" {
		t.Errorf("links %+v", b.Link)
	}
	if got.header.Get("X-Chaperone-Withheld") != "2" || len(strings.Split(got.header.Get("X-Chaperone-Decision-Ids"), ",")) != 4 {
		t.Errorf("headers %v", got.header)
	}
	recs := r.rec.All()
	if len(recs) != 4 || got.header.Get("X-Chaperone-Decisions") != "4" {
		t.Errorf("%d decisions recorded, want 4 (request phase and three entries)", len(recs))
	}
	for _, rc := range recs {
		if c := rc.Req.GetContext().GetCorrelationId(); c == "" || c != got.header.Get("X-Request-Id") {
			t.Errorf("decision with correlation id %q, answer X-Request-Id %q", c, got.header.Get("X-Request-Id"))
		}
	}
}

// TestUpstreamAnswers: an answer that is not JSON is not released; an
// upstream OperationOutcome keeps only its codes; a masked read drops
// the element and gets the REDACTED label.
func TestUpstreamAnswers(t *testing.T) {
	t.Parallel()
	r := newRig(t, map[string]string{
		"GET /Observation/x":  `<Observation xmlns="http://hl7.org/fhir"/>`,
		"GET /Observation/o2": res("Observation", "other", "o1", "Patient/p1", ""),
		"GET /Encounter/e1":   res("Encounter", "e1", "o1", "Patient/p1", `,"status":"finished","reasonCode":[{"text":"why"}],"text":{"status":"generated","div":"<div>why</div>"}`),
	}, "")
	if got := r.do(t, "GET", "/Observation/x", ""); got.status != 502 {
		t.Errorf("XML answer: %d %s", got.status, got.body)
	}
	if got := r.do(t, "GET", "/Observation/o2", ""); got.status != 502 {
		t.Errorf("answer of another id: %d %s", got.status, got.body)
	}
	if got := r.do(t, "GET", "/Observation/none", ""); got.status != 404 || strings.Contains(got.body, "Jane") {
		t.Errorf("upstream 404: %d %s", got.status, got.body)
	}
	r.token = r.sign(t, map[string]any{"fhirUser": "Practitioner/c1", "roles": "care-coordinator", "org": "Organization/o1"})
	got := r.do(t, "GET", "/Encounter/e1", "")
	if got.status != 200 || strings.Contains(got.body, "why") || !strings.Contains(got.body, "REDACTED") || !strings.Contains(got.body, `"status":"finished"`) {
		t.Errorf("masked read: %d %s", got.status, got.body)
	}
}

// TestWrites: a write is decided with the stored resource's and the new
// content's attributes before it is forwarded.
func TestWrites(t *testing.T) {
	t.Parallel()
	stored := res("Observation", "o1", "o1", "Patient/p1", `,"status":"final"`)
	r := newRig(t, map[string]string{
		"GET /Observation/o1":   stored,
		"PUT /Observation/o1":   stored,
		"PATCH /Observation/o1": stored,
		"GET /Observation/o3":   res("Observation", "o3", "o2", "Patient/p3", ""),
	}, "")
	patch := func(ops string) reply {
		return r.do(t, "PATCH", "/Observation/o1", ops, "Content-Type", "application/json-patch+json")
	}
	for _, tc := range []struct {
		name   string
		got    reply
		status int
	}{
		{"update", r.do(t, "PUT", "/Observation/o1", res("Observation", "o1", "o1", "Patient/p1", "")), 200},
		{"update moving to another tenant", r.do(t, "PUT", "/Observation/o1", res("Observation", "o1", "o2", "Patient/p1", "")), 403},
		{"update of another tenant's", r.do(t, "PUT", "/Observation/o3", res("Observation", "o3", "o1", "Patient/p1", "")), 403},
		{"update with another id", r.do(t, "PUT", "/Observation/o1", res("Observation", "zz", "o1", "Patient/p1", "")), 400},
		{"stale If-Match", r.do(t, "PUT", "/Observation/o1", res("Observation", "o1", "o1", "Patient/p1", ""), "If-Match", `W/"0"`), 412},
		{"patch", patch(`[{"op":"test","path":"/status","value":"final"},{"op":"replace","path":"/status","value":"amended"}]`), 200},
		{"patch to another tenant", patch(`[{"op":"replace","path":"/meta/tag/0/code","value":"o2"}]`), 403},
		{"patch adding a label", patch(`[{"op":"add","path":"/meta/security","value":[{"code":"bad code"}]}]`), 403},
		{"patch moving the subject", patch(`[{"op":"copy","from":"/subject","path":"/focus"},{"op":"move","from":"/focus","path":"/performer"},{"op":"add","path":"/performer/reference","value":"http://x/Patient/9"}]`), 403},
		{"patch failing its test", patch(`[{"op":"test","path":"/status","value":"draft"}]`), 422},
		{"patch of the id", patch(`[{"op":"replace","path":"/id","value":"o9"}]`), 422},
		{"delete of another tenant's", r.do(t, "DELETE", "/Observation/o3", ""), 403},
	} {
		if tc.got.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, tc.got.status, tc.got.body, tc.status)
		}
	}
	for _, h := range r.fhir.reached() {
		if strings.Contains(h, "o3") && !strings.HasPrefix(h, "GET ") {
			t.Errorf("a refused write reached the FHIR server: %s", h)
		}
	}
}

// TestBatch: refused entries are answered 403 inside the batch-response
// and not forwarded; forwarded reads are decided on what comes back.
func TestBatch(t *testing.T) {
	t.Parallel()
	ok := `{"status":"200 OK","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"read Jane Doe"}]}}`
	answer := `{"resourceType":"Bundle","type":"batch-response","entry":[
		{"response":` + ok + `,"resource":` + res("Observation", "a", "o1", "Patient/p1", "") + `},
		{"response":` + ok + `,"resource":` + res("Observation", "b", "o2", "Patient/p3", "") + `}]}`
	r := newRig(t, map[string]string{"POST ": answer}, "")
	got := r.do(t, "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Observation/a"}},
		{"request":{"method":"GET","url":"Claim/c1"}},
		{"request":{"method":"GET","url":"Observation/b"}}]}`)
	var b struct {
		Type  string
		Entry []struct {
			Response struct {
				Status  string
				Outcome json.RawMessage
			}
			Resource map[string]any
		}
	}
	if err := json.Unmarshal([]byte(got.body), &b); err != nil || got.status != 200 || b.Type != "batch-response" || len(b.Entry) != 3 {
		t.Fatalf("%d %s", got.status, got.body)
	}
	if b.Entry[0].Resource["id"] != "a" || b.Entry[1].Resource != nil || b.Entry[2].Resource != nil ||
		!strings.HasPrefix(b.Entry[1].Response.Status, "403") || !strings.Contains(string(b.Entry[1].Response.Outcome), "NO_PERMIT") ||
		!strings.HasPrefix(b.Entry[2].Response.Status, "403") || !strings.Contains(string(b.Entry[2].Response.Outcome), "TENANT_MISMATCH") {
		t.Errorf("entries %s", got.body)
	}
	if strings.Contains(got.body, "Jane") {
		t.Errorf("an upstream outcome's text released: %s", got.body)
	}
	if hits := r.fhir.reached(); len(hits) != 1 || hits[0] != "POST /fhir" || strings.Contains(r.fhir.bodies[0], "Claim") || strings.Count(r.fhir.bodies[0], `"request"`) != 2 {
		t.Errorf("upstream saw %v %v, want one POST of the two allowed entries", hits, r.fhir.bodies)
	}
}
