package pep_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/pep"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// byID decides a resource by its id: "deny-*" is denied, "mask-*" allowed
// with Patient.telecom and Observation.value[x] masked, anything else
// allowed as is. It records every resource it was asked about.
type byID struct{ asked []string }

func (d *byID) decide(rs []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
	out := make([]*chaperonev1.CheckResponse, len(rs))
	for i, r := range rs {
		var res struct{ ResourceType, ID string }
		if err := json.Unmarshal(r, &res); err != nil {
			return nil, err
		}
		d.asked = append(d.asked, res.ResourceType+"/"+res.ID)
		switch {
		case strings.HasPrefix(res.ID, "deny-"):
			out[i] = &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_DENY}
		case strings.HasPrefix(res.ID, "nil-"):
		case strings.HasPrefix(res.ID, "mask-"):
			out[i] = &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW,
				Obligations: masks("Patient.telecom", "Observation.value[x]")}
		case strings.HasPrefix(res.ID, "label-"):
			out[i] = &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW,
				Obligations: labels("|R")}
		default:
			out[i] = &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW}
		}
	}
	return out, nil
}

func entry(typ, id, extra string) string {
	return fmt.Sprintf(`{"fullUrl":"http://fhir.example/%s/%s","resource":{"resourceType":%q,"id":%q%s},"search":{"mode":"match"}}`, typ, id, typ, id, extra)
}

func searchset(entries ...string) string {
	return `{"resourceType":"Bundle","id":"b","type":"searchset","total":` + fmt.Sprint(len(entries)) +
		`,"link":[{"relation":"self","url":"http://fhir.example/Patient"}],"entry":[` + strings.Join(entries, ",") + `]}`
}

func TestApplyBundle(t *testing.T) {
	t.Parallel()
	const tel = `,"telecom":[{"value":"555"}]`
	for _, tc := range []struct {
		name      string
		in        string
		batch     int
		withheld  int
		wantIDs   []string // entry resource ids released, in order
		wantTotal bool
		asked     int
	}{
		{"all allowed keeps total", searchset(entry("Patient", "a", tel), entry("Patient", "b", "")), 0, 0, []string{"a", "b"}, true, 2},
		{"denied, nil and labelled entries go, total goes", searchset(
			entry("Patient", "a", ""), entry("Patient", "deny-1", tel), entry("Patient", "nil-1", ""),
			entry("Condition", "label-1", `,"meta":{"security":[{"code":"R"}]}`), entry("Condition", "label-2", "")),
			0, 3, []string{"a", "label-2"}, false, 5},
		{"masked entry stays", searchset(entry("Patient", "mask-1", tel), entry("Observation", "mask-2", `,"valueQuantity":{"value":1}`)),
			0, 0, []string{"mask-1", "mask-2"}, true, 2},
		{"every entry denied drops entry", searchset(entry("Patient", "deny-1", ""), entry("Patient", "deny-2", "")), 0, 2, nil, false, 2},
		{"OperationOutcome and resource-less entries pass undecided", searchset(
			entry("OperationOutcome", "oo", `,"issue":[{"severity":"warning","code":"processing"}]`),
			`{"request":{"method":"DELETE","url":"Patient/x"},"response":{"status":"204"}}`,
			entry("Patient", "deny-1", "")), 0, 1, []string{"oo", ""}, false, 1},
		{"small batches", searchset(entry("Patient", "a", ""), entry("Patient", "deny-1", ""), entry("Patient", "c", ""), entry("Patient", "d", "")),
			1, 1, []string{"a", "c", "d"}, false, 4},
		{"nested search Bundle in a batch-response", `{"resourceType":"Bundle","type":"batch-response","entry":[{"resource":` +
			searchset(entry("Patient", "deny-1", ""), entry("Patient", "n", "")) + `,"response":{"status":"200"}}]}`,
			0, 1, []string{"b"}, false, 2},
		{"total after entry", `{"resourceType":"Bundle","type":"searchset","entry":[` + entry("Patient", "a", "") + `],"total":1}`,
			0, 0, []string{"a"}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &byID{}
			var opts []pep.Option
			if tc.batch > 0 {
				opts = append(opts, pep.WithBatchSize(tc.batch))
			}
			out, withheld, err := pep.ApplyBundle([]byte(tc.in), d.decide, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if withheld != tc.withheld {
				t.Errorf("withheld = %d, want %d", withheld, tc.withheld)
			}
			if len(d.asked) != tc.asked {
				t.Errorf("decided %v, want %d resources", d.asked, tc.asked)
			}
			var b struct {
				ResourceType string
				Total        *int
				Link         []any
				Entry        []struct {
					Resource map[string]any
				}
			}
			if err := json.Unmarshal(out, &b); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if (b.Total != nil) != tc.wantTotal {
				t.Errorf("total present = %v, want %v: %s", b.Total != nil, tc.wantTotal, out)
			}
			var ids []string
			for _, e := range b.Entry {
				id, _ := e.Resource["id"].(string)
				ids = append(ids, id)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.wantIDs) {
				t.Errorf("entries %v, want %v: %s", ids, tc.wantIDs, out)
			}
			if tc.wantIDs == nil && bytes.Contains(out, []byte(`"entry"`)) {
				t.Errorf("empty entry member: %s", out)
			}
			doc := decode(t, out)
			for _, p := range []string{"Patient.telecom", "Observation.value[x]"} {
				if strings.Contains(tc.in, `"mask-`) && reaches(doc, p) {
					t.Errorf("%s released: %s", p, out)
				}
			}
			if bytes.Contains(out, []byte("deny-")) || bytes.Contains(out, []byte("label-1")) || bytes.Contains(out, []byte("nil-")) {
				t.Errorf("withheld entry released: %s", out)
			}
		})
	}
}

func TestApplyBundleFailsClosed(t *testing.T) {
	t.Parallel()
	ok := (&byID{}).decide
	for _, tc := range []struct {
		name    string
		in      string
		decide  pep.Decider
		opts    []pep.Option
		wantErr error
	}{
		{"decider error", searchset(entry("Patient", "a", "")), func([]json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
			return nil, errors.New("pdp down")
		}, nil, pep.ErrDecide},
		{"too few decisions", searchset(entry("Patient", "a", ""), entry("Patient", "b", "")), func([]json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
			return []*chaperonev1.CheckResponse{{Decision: chaperonev1.Decision_DECISION_ALLOW}}, nil
		}, nil, pep.ErrDecide},
		{"not a Bundle", `{"resourceType":"Patient","entry":[]}`, ok, nil, pep.ErrNotBundle},
		{"no resourceType", `{"entry":[]}`, ok, nil, pep.ErrNotBundle},
		{"entry not an array", `{"resourceType":"Bundle","entry":{}}`, ok, nil, pep.ErrNotBundle},
		{"entry resource no resource", `{"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}`, ok, nil, pep.ErrNotResource},
		{"truncated", searchset(entry("Patient", "a", ""))[:60], ok, nil, pep.ErrInvalidJSON},
		{"duplicate entry member", `{"resourceType":"Bundle","entry":[],"entry":[]}`, ok, nil, pep.ErrInvalidJSON},
		{"too large", searchset(entry("Patient", "a", "")), ok, []pep.Option{pep.WithMaxBytes(50)}, pep.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := pep.ApplyBundle([]byte(tc.in), tc.decide, tc.opts...)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if out != nil {
				t.Errorf("output on error: %s", out)
			}
		})
	}
}

func TestApplyNDJSON(t *testing.T) {
	t.Parallel()
	in := `{"resourceType":"Patient","id":"a","telecom":[{"value":"1"}]}
{"resourceType":"Patient","id":"deny-1"}

{"resourceType":"Patient","id":"mask-1","telecom":[{"value":"2"}],"name":[{"family":"X"}]}
{"resourceType":"Observation","id":"label-1","meta":{"security":[{"code":"R"}]}}`
	d := &byID{}
	var out bytes.Buffer
	withheld, err := pep.ApplyNDJSON(&out, strings.NewReader(in), d.decide, pep.WithBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	if withheld != 2 {
		t.Errorf("withheld = %d, want 2", withheld)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"id":"a"`) || !strings.Contains(lines[1], `"id":"mask-1"`) || strings.Contains(lines[1], "telecom") {
		t.Errorf("output:\n%s", out.String())
	}
	// A line over the limit stops the stream.
	_, err = pep.ApplyNDJSON(&bytes.Buffer{}, strings.NewReader(in), d.decide, pep.WithMaxBytes(40))
	if !errors.Is(err, pep.ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
	_, err = pep.ApplyNDJSON(&bytes.Buffer{}, strings.NewReader("{\"resourceType\":\"Patient\"}\n{"), d.decide)
	if !errors.Is(err, pep.ErrInvalidJSON) {
		t.Errorf("err = %v, want ErrInvalidJSON", err)
	}
}

func TestApplyBundleHL7(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"hl7/Bundle-bundle-example.json", "hl7/Bundle-bundle-response.json"} {
		d := &byID{}
		out, withheld, err := pep.ApplyBundle(fixture(t, f), d.decide)
		if err != nil || withheld != 0 {
			t.Fatalf("%s: withheld %d, err %v", f, withheld, err)
		}
		if len(d.asked) == 0 {
			t.Errorf("%s: nothing decided", f)
		}
		decode(t, out)
	}
}

// signalWriter reports the first write that reaches it.
type signalWriter struct {
	bytes.Buffer
	first chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if w.Len() == 0 && len(p) > 0 {
		close(w.first)
	}
	return w.Buffer.Write(p)
}

// TestApplyBundleStreams: released entries reach the writer while the rest
// of the Bundle has not been read yet, and each Decider call sees at most
// one batch.
func TestApplyBundleStreams(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	out := &signalWriter{first: make(chan struct{})}
	var most int
	decide := func(rs []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
		most = max(most, len(rs))
		return (&byID{}).decide(rs)
	}
	done := make(chan error, 1)
	go func() {
		_, err := pep.ApplyBundleStream(out, pr, decide, pep.WithBatchSize(10))
		done <- err
	}()
	pad := `,"note":"` + strings.Repeat("x", 200) + `"`
	write := func(from, to int) {
		for i := from; i < to; i++ {
			sep := ","
			if i == 0 {
				sep = ""
			}
			if _, err := io.WriteString(pw, sep+entry("Patient", fmt.Sprint("p", i), pad)); err != nil {
				t.Error(err)
			}
		}
	}
	io.WriteString(pw, `{"resourceType":"Bundle","type":"searchset","entry":[`)
	write(0, 50)
	select {
	case <-out.first:
	case err := <-done:
		t.Fatalf("returned before the Bundle ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing written after 50 entries of an unfinished Bundle")
	}
	write(50, 100)
	io.WriteString(pw, `]}`)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if most > 10 {
		t.Errorf("a Decider call got %d resources, batch size 10", most)
	}
	var b struct{ Entry []any }
	if err := json.Unmarshal(out.Bytes(), &b); err != nil || len(b.Entry) != 100 {
		t.Errorf("%d entries, err %v", len(b.Entry), err)
	}
}

func TestApplyBundleSignature(t *testing.T) {
	t.Parallel()
	sig := `,"signature":{"type":[{"system":"urn:iso-astm:E1762-95:2013","code":"1.2.840.10065.1.12.1.1"}],"when":"2020-01-01T00:00:00Z","who":{"reference":"Device/d"},"data":"c2ln"}`
	for _, tc := range []struct {
		name    string
		entries []string
		keep    bool
	}{
		{"all released unchanged", []string{entry("Patient", "a", "")}, true},
		{"an entry masked", []string{entry("Patient", "a", ""), entry("Patient", "mask-1", `,"telecom":[{"value":"1"}]`)}, false},
		{"an entry denied", []string{entry("Patient", "a", ""), entry("Patient", "deny-1", "")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := `{"resourceType":"Bundle","type":"collection"` + sig + `,"entry":[` + strings.Join(tc.entries, ",") + `]}`
			out, _, err := pep.ApplyBundle([]byte(in), (&byID{}).decide)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(out, []byte(`"signature"`)); got != tc.keep {
				t.Errorf("signature kept = %v, want %v: %s", got, tc.keep, out)
			}
		})
	}
}

func TestApplyBundleStrictJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"resourceType":"Bundle","link":[{"url":"a","url":"b"}],"entry":[]}`,
		`{"resourceType":"Bundle","meta":{"security":[],"secur\u0069ty":[]}}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a","id":"b"}}]}`,
		`{"resourceType":"Bundle","type":"searchset","typ\u0065":"x"}`,
	} {
		if out, _, err := pep.ApplyBundle([]byte(in), (&byID{}).decide); !errors.Is(err, pep.ErrInvalidJSON) || out != nil {
			t.Errorf("%s: err %v, out %s", in, err, out)
		}
	}
}
