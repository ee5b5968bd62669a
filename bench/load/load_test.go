package load

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

func TestSchedule(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		rate  float64
		n     int64
		at    time.Duration
		count time.Duration
		want  int64
	}{
		{name: "rate=10000/first", rate: 10000, n: 0, at: 0, count: time.Second, want: 10000},
		{name: "rate=10000/one second", rate: 10000, n: 10000, at: time.Second, count: 30 * time.Second, want: 300000},
		{name: "rate=10000/interval", rate: 10000, n: 1, at: 100 * time.Microsecond, count: time.Millisecond, want: 10},
		{name: "rate=3/third", rate: 3, n: 1, at: 333333333, count: time.Second, want: 3},
		{name: "rate=3/boundary", rate: 3, n: 2, at: 666666666, count: 666666667 * time.Nanosecond, want: 3},
		{name: "rate=0.5", rate: 0.5, n: 3, at: 6 * time.Second, count: 5 * time.Second, want: 3},
		{name: "rate=400/500ms", rate: 400, n: 200, at: 500 * time.Millisecond, count: 500 * time.Millisecond, want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Schedule{Start: start, Rate: tc.rate}
			if got := s.At(tc.n).Sub(start); got != tc.at {
				t.Errorf("At(%d) = start+%v, want start+%v", tc.n, got, tc.at)
			}
			if got := s.Count(tc.count); got != tc.want {
				t.Errorf("Count(%v) = %d, want %d", tc.count, got, tc.want)
			}
			// Due times never go backwards.
			for i := range int64(1000) {
				if s.At(i + 1).Before(s.At(i)) {
					t.Fatalf("At(%d) before At(%d)", i+1, i)
				}
			}
		})
	}
}

func TestDecodeProto(t *testing.T) {
	t.Parallel()
	for _, d := range []chaperonev1.Decision{chaperonev1.Decision_DECISION_ALLOW, chaperonev1.Decision_DECISION_DENY, chaperonev1.Decision_DECISION_UNSPECIFIED} {
		b, err := proto.Marshal(&chaperonev1.CheckResponse{
			Decision: d, DecisionId: "x", BundleRevision: "r",
			Reasons: []*chaperonev1.Reason{{Code: "NO_PERMIT"}}, Obligations: &chaperonev1.Obligations{MaskPaths: []string{"a"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeProto(b)
		if want := strings.TrimPrefix(d.String(), "DECISION_"); err != nil || got != want {
			t.Errorf("decodeProto = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := decodeProto([]byte{0x08}); err == nil {
		t.Error("truncated varint decoded")
	}
}

func TestReadRequests(t *testing.T) {
	t.Parallel()
	reqs, err := ReadRequests(strings.NewReader(`{"action":"read"}` + "\n\n" + `{"action":"search"}` + "\n"))
	if err != nil || len(reqs) != 2 || reqs[1].GetAction() != "search" {
		t.Fatalf("ReadRequests = %v, %v", reqs, err)
	}
	if _, err := ReadRequests(strings.NewReader("{\"action\":\"read\"}\n{nope}\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: err = %v", err)
	}
	if _, err := ReadRequests(strings.NewReader("\n")); err == nil {
		t.Error("empty input accepted")
	}
}

func TestOPABodies(t *testing.T) {
	t.Parallel()
	sc, err := LookupScenario("reference")
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := OPABodies(sc.Requests[:1])
	if err != nil {
		t.Fatal(err)
	}
	s := string(bodies[0])
	for _, want := range []string{`{"input":{`, `"purposeOfUse":"TREAT"`, `"breakGlassReason":""`, `"networkZone":"clinic"`} {
		if !strings.Contains(s, want) {
			t.Errorf("body has no %s: %s", want, s)
		}
	}
}
