package bench_test

import (
	"context"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/cedar-policy/cedar-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/bench/load"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// noConsents is a consent layer for a store without any consent.
type noConsents = testkit.NoConsents

func clinicianRead() *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1", Scopes: []string{"user/Observation.rs"}, ClientId: "portal"},
		Action: "read",
		Resource: &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: "Patient/52", Organization: "Organization/o1",
			SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}},
			Codes:          []*chaperonev1.Coding{{System: "http://loinc.org", Code: "1234-5"}}},
		PurposeOfUse: "TREAT",
		// Now: serve refuses a context.time beyond its clock skew.
		Context: &chaperonev1.Context{Time: timestamppb.Now(), NetworkZone: "clinic"},
	}
}

func referenceEngine(b *testing.B, opts ...engine.Option) *engine.Engine {
	b.Helper()
	bundle, err := engine.LoadBundle(policies.FS)
	if err != nil {
		b.Fatal(err)
	}
	e := engine.New(noConsents{}, opts...)
	e.Activate(bundle)
	return e
}

// BenchmarkCheck measures one decision in-process against the reference
// bundle, and bare cedar-go Authorize on the same Cedar policies with the
// same entities, in the same run.
func BenchmarkCheck(b *testing.B) {
	for _, memo := range []int{50000, 0} {
		name := "engine=chaperone/memo=warm"
		if memo == 0 {
			name = "engine=chaperone/memo=off"
		}
		b.Run(name, func(b *testing.B) {
			e := referenceEngine(b, engine.WithMemo(memo))
			req := clinicianRead()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if e.Check(ctx, req).GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
					b.Fatal("not allowed")
				}
			}
		})
	}
	// Every request for another resource id: the decision memo, keyed on
	// the whole request, misses every time; the Rego layer's memo, keyed
	// on the fields its modules read, hits. This is what a gateway's
	// traffic looks like (one clinician reading many resources).
	b.Run("engine=chaperone/memo=distinct-ids", func(b *testing.B) {
		e := referenceEngine(b)
		req := clinicianRead()
		ctx := context.Background()
		ids := make([]string, 1<<20)
		for i := range ids {
			ids[i] = "o" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			req.Resource.Id = ids[n%len(ids)]
			n++
			if e.Check(ctx, req).GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
				b.Fatal("not allowed")
			}
		}
	})
	// The same with consents from the in-memory store (one consent for
	// the patient: evaluated on every decision, never memoised).
	for _, memo := range []int{50000, 0} {
		name := "engine=chaperone/consents=store/memo=warm"
		if memo == 0 {
			name = "engine=chaperone/consents=store/memo=off"
		}
		b.Run(name, func(b *testing.B) {
			e := storeEngine(b, engine.WithMemo(memo))
			req := clinicianRead()
			req.Resource.Patient = "Patient/cp" // a permitting consent
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if e.Check(ctx, req).GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
					b.Fatal("not allowed")
				}
			}
		})
	}
	b.Run("engine=cedar-go", func(b *testing.B) {
		ps := cedarPolicySet(b)
		entities, creq := cedarRequest()
		b.ReportAllocs()
		if d, diag := cedar.Authorize(ps, entities, creq); d != cedar.Allow || len(diag.Errors) > 0 {
			b.Fatalf("decision %v, errors %v", d, diag.Errors)
		}
		for b.Loop() {
			if d, _ := cedar.Authorize(ps, entities, creq); d != cedar.Allow {
				b.Fatal("not allowed")
			}
		}
	})
}

// cedarPolicySet parses the reference bundle's Cedar files into one policy set.
func cedarPolicySet(b testing.TB) *cedar.PolicySet {
	ps := cedar.NewPolicySet()
	files, _ := fs.Glob(policies.FS, "*.cedar")
	for _, f := range files {
		src, _ := fs.ReadFile(policies.FS, f)
		list, err := cedar.NewPolicyListFromBytes(f, src)
		if err != nil {
			b.Fatal(err)
		}
		for i, p := range list {
			ps.Add(cedar.PolicyID(f+string(rune('a'+i))), p)
		}
	}
	return ps
}

// cedarRequest builds the entities the engine builds for clinicianRead.
func cedarRequest() (cedar.EntityMap, cedar.Request) {
	r := clinicianRead()
	principal := cedar.NewEntityUID("Subject", cedar.String(r.Subject.Id))
	resource := cedar.NewEntityUID("Observation", cedar.String(r.Resource.Id))
	read := cedar.NewEntityUID("Action", "read")
	entities := cedar.EntityMap{
		principal: {UID: principal, Parents: cedar.NewEntityUIDSet(cedar.NewEntityUID("Role", "clinician")),
			Attributes: cedar.NewRecord(cedar.RecordMap{
				"id": cedar.String(r.Subject.Id), "kind": cedar.String("practitioner"),
				"roles": cedar.NewSet(cedar.String("clinician")), "organization": cedar.String("Organization/o1"),
				"clientId": cedar.String("portal"), "launchPatient": cedar.String(""), "scopes": cedar.NewSet(cedar.String("user/Observation.rs")),
				"identifiers": cedar.NewSet(),
			})},
		resource: {UID: resource, Attributes: cedar.NewRecord(cedar.RecordMap{
			"type": cedar.String("Observation"), "id": cedar.String("o1"), "patient": cedar.String("Patient/52"),
			"organization": cedar.String("Organization/o1"), "author": cedar.String(""),
			"labels":         cedar.NewSet(cedar.String("N")),
			"securityLabels": cedar.NewSet(cedar.String("http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N")),
			"codes":          cedar.NewSet(cedar.String("http://loinc.org|1234-5")), "categories": cedar.NewSet(),
		})},
		read: {UID: read, Parents: cedar.NewEntityUIDSet(cedar.NewEntityUID("Action", "access"))},
	}
	ctx := cedar.NewRecord(cedar.RecordMap{
		"purposeOfUse": cedar.String("TREAT"), "time": cedar.NewDatetime(r.Context.Time.AsTime()), "hour": cedar.Long(12),
		"breakGlassReason": cedar.String(""), "networkZone": cedar.String("clinic"), "deviceTrust": cedar.String(""),
		"consent": cedar.String("NO_CONSENT"), "breakGlassGrant": cedar.False,
		"consentNamesSubject": cedar.False, "consentNamesRecipient": cedar.False, "consentRestrictsRecipient": cedar.False,
		"sameOrganization": cedar.True, "population": cedar.False, "phase": cedar.String("resource"),
		"scopes": cedar.NewRecord(cedar.RecordMap{"present": cedar.True, "allows": cedar.True, "levels": cedar.NewSet(cedar.String("user"))}),
		"agreement": cedar.NewRecord(cedar.RecordMap{
			"exists": cedar.False, "active": cedar.False, "covers": cedar.False, "vendor": cedar.String(""), "tier": cedar.String(""),
			"purposes": cedar.NewSet(), "resourceTypes": cedar.NewSet(),
		}),
	})
	return entities, cedar.Request{Principal: principal, Action: read, Resource: resource, Context: ctx}
}

// TestCedarRequestDecides keeps the hand-built request of the bare
// cedar-go benchmark in step with the facts the reference policies read: a
// new context key or attribute they use makes this fail in CI (benchmarks
// are not run there).
func TestCedarRequestDecides(t *testing.T) {
	t.Parallel()
	ps := cedarPolicySet(t)
	entities, creq := cedarRequest()
	if d, diag := cedar.Authorize(ps, entities, creq); d != cedar.Allow || len(diag.Errors) > 0 {
		t.Fatalf("decision %v, errors %v", d, diag.Errors)
	}
}

// BenchmarkCheckLoopback measures Check over loopback Connect (HTTP/1.1,
// Connect protocol with protobuf), sequential and parallel.
//
// The connect-go client asks for gzip, and the server by default compresses
// every response however small; compress=min1KiB serves with
// connect.WithCompressMinBytes(1024) (responses are ≈100-300 bytes) to
// show what that costs on loopback.
func BenchmarkCheckLoopback(b *testing.B) {
	for _, compress := range []string{"default", "min1KiB"} {
		var opts []server.Option
		if compress == "min1KiB" {
			opts = append(opts, server.WithHandlerOptions(connect.WithCompressMinBytes(1024)))
		}
		base := serve(b, opts...)
		for _, mode := range []string{"sequential", "parallel"} {
			checkLoopback(b, "compress="+compress+"/mode="+mode, base, mode)
		}
	}
}

// BenchmarkCheckLoopbackJSON measures Check over loopback Connect with the
// JSON codec (what curl and most gateways send): decoder=strict is the
// server's own codec, which refuses unknown fields; decoder=discard serves
// with a codec that drops them as connect-go's default does, for the cost
// of strictness in the same run.
func BenchmarkCheckLoopbackJSON(b *testing.B) {
	for _, decoder := range []string{"strict", "discard"} {
		var opts []server.Option
		if decoder == "discard" {
			opts = append(opts, server.WithHandlerOptions(connect.WithCodec(discardJSON{})))
		}
		base := serve(b, opts...)
		for _, mode := range []string{"sequential", "parallel"} {
			checkLoopback(b, "decoder="+decoder+"/mode="+mode, base, mode, connect.WithProtoJSON())
		}
	}
}

// discardJSON is a JSON codec that drops unknown fields.
type discardJSON struct{}

func (discardJSON) Name() string { return "json" }
func (discardJSON) Marshal(m any) ([]byte, error) {
	return protojson.Marshal(m.(proto.Message))
}
func (discardJSON) Unmarshal(data []byte, m any) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m.(proto.Message))
}

func checkLoopback(b *testing.B, name, base, mode string, opts ...connect.ClientOption) {
	b.Run(name, func(b *testing.B) {
		client := chaperonev1connect.NewDecisionServiceClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, base, opts...)
		msg := clinicianRead()
		ctx := context.Background()
		b.ReportAllocs()
		if mode == "sequential" {
			for b.Loop() {
				if _, err := client.Check(ctx, connect.NewRequest(msg)); err != nil {
					b.Fatal(err)
				}
			}
			return
		}
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Check(ctx, connect.NewRequest(msg)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkBatchCheckLoopback measures BatchCheck of 100 requests (the
// reference scenario's mix) over loopback Connect; ns/op is per batch.
func BenchmarkBatchCheckLoopback(b *testing.B) {
	base := serve(b)
	client := chaperonev1connect.NewDecisionServiceClient(http.DefaultClient, base)
	sc, _ := load.LookupScenario("reference")
	batch := &chaperonev1.BatchCheckRequest{}
	for i := range 100 {
		batch.Requests = append(batch.Requests, sc.Requests[i%len(sc.Requests)])
	}
	ctx := context.Background()
	b.Run("batch=100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.BatchCheck(ctx, connect.NewRequest(batch))
			if err != nil || len(resp.Msg.GetResponses()) != 100 {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/check")
	})
}

func serve(b *testing.B, opts ...server.Option) string {
	b.Helper()
	v, err := validation.New()
	if err != nil {
		b.Fatal(err)
	}
	hs := server.New(storeEngine(b), v, opts...).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go hs.Serve(ln)
	b.Cleanup(func() { hs.Close() })
	return "http://" + strings.TrimPrefix(ln.Addr().String(), "http://")
}
