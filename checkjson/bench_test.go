package checkjson_test

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chaperone-pdp/chaperone/checkjson"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// A Check of the reference scenario and a typical answer.
var (
	benchRequest  = []byte(`{"subject":{"id":"Practitioner/p1","kind":"practitioner","roles":["clinician"],"organization":"Organization/o1","scopes":["user/Observation.rs"]},"action":"read","resource":{"type":"Observation","id":"o1","patient":"Patient/52","securityLabels":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}],"organization":"Organization/o1"},"purposeOfUse":"TREAT","context":{"networkZone":"clinic","correlationId":"c-1"}}`)
	benchResponse = &chaperonev1.CheckResponse{
		Decision:       chaperonev1.Decision_DECISION_ALLOW,
		Obligations:    &chaperonev1.Obligations{AuditTags: []string{"SENSITIVE"}, MaskPaths: []string{"Observation.note"}},
		Reasons:        []*chaperonev1.Reason{{Code: "POLICY_PERMIT", PolicyId: "clinician-read"}},
		DecisionId:     "0193a1f2-7c1e-7000-8000-000000000001",
		BundleRevision: "sha256:4f1c",
		CacheTtl:       durationpb.New(30e9),
	}
)

func BenchmarkUnmarshal(b *testing.B) {
	b.Run("impl=checkjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !checkjson.Unmarshal(benchRequest, &chaperonev1.CheckRequest{}) {
				b.Fatal("not on the fast path")
			}
		}
	})
	b.Run("impl=protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := protojson.Unmarshal(benchRequest, &chaperonev1.CheckRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	b.Run("impl=checkjson", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			if _, ok := checkjson.Append(buf[:0], benchResponse); !ok {
				b.Fatal("not on the fast path")
			}
		}
	})
	b.Run("impl=protojson", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			if _, err := (protojson.MarshalOptions{}).MarshalAppend(buf[:0], benchResponse); err != nil {
				b.Fatal(err)
			}
		}
	})
}
