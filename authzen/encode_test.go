package authzen_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/authzen"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestEncodeRoundTrip: a CheckRequest with every field set, encoded as
// AuthZEN and sent through the door, reaches the engine (and the audit
// record) unchanged: the mapping loses nothing.
func TestEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	srv := start(t, nil)
	now := time.Now().Truncate(time.Millisecond)
	req := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{
			Id: "Practitioner/p1", Kind: "practitioner",
			Identifiers:             []*chaperonev1.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "123"}},
			Roles:                   []string{"clinician"},
			Organization:            "Organization/o1",
			OrganizationIdentifiers: []*chaperonev1.Identifier{{System: "urn:oid:2.16.840.1.113883.4.4", Value: "99"}},
			Scopes:                  []string{"user/Observation.rs"},
			ClientId:                "portal",
			LaunchPatient:           "Patient/52",
		},
		Action: "read",
		Resource: &chaperonev1.Resource{
			Type: "Observation", Id: "o1", Patient: "Patient/52",
			SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}},
			Codes:          []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5"}},
			Categories:     []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "laboratory"}},
			Organization:   "Organization/o1", Author: "Practitioner/x",
			Date:     timestamppb.New(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)),
			Profiles: []string{"http://hl7.org/fhir/StructureDefinition/vitalsigns"},
		},
		PurposeOfUse: "TREAT",
		Context: &chaperonev1.Context{
			Time: timestamppb.New(now), BreakGlassReason: "patient unconscious in the emergency department",
			Ip: "10.1.2.3", NetworkZone: "clinic", DeviceTrust: "managed", CorrelationId: "c-1", Phase: "resource",
		},
	}
	// Every field is set, so a field added later without a mapping fails here.
	if missing := unset(req.ProtoReflect(), ""); missing != "" {
		t.Fatalf("the test request leaves %s unset: set it, and map it in the door", missing)
	}
	body, err := authzen.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	r := post(t, srv.url+authzen.EvaluationPath, string(body))
	d := readDecision(t, r.json(t))
	if d.decisionID == "" {
		t.Fatalf("not decided: %s", r.body)
	}
	for _, rec := range srv.recorder.All() {
		if rec.Resp.GetDecisionId() == d.decisionID {
			if !proto.Equal(req, rec.Req) {
				t.Fatalf("the door changed the request:\nsent    %s\ndecided %s", protojson.Format(req), protojson.Format(rec.Req))
			}
			return
		}
	}
	t.Fatal("no audit record")
}

// unset is the path of the first field of m (recursively, first item of
// lists) that is not set, "" when all are. Timestamps count as values.
func unset(m protoreflect.Message, at string) string {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		path := at + string(fd.Name())
		if !m.Has(fd) {
			return path
		}
		if fd.Message() == nil || fd.Message().FullName() == "google.protobuf.Timestamp" {
			continue
		}
		v := m.Get(fd)
		if fd.IsList() {
			v = v.List().Get(0)
		}
		if p := unset(v.Message(), path+"."); p != "" {
			return p
		}
	}
	return ""
}
