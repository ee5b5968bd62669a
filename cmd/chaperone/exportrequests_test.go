package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/keyset"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/test/redistest"
	"github.com/chaperone-pdp/chaperone/validation"
)

// requestFields draws a valid value for every leaf field of a
// CheckRequest, by JSON path; set reports whether the drawn value is not
// the zero value. TestRequestFieldsCoverCheckRequest fails when the API
// gains a field this table does not draw, so the round trip below cannot
// miss it.
var requestFields = map[string]func(t *rapid.T, req *chaperonev1.CheckRequest){
	"subject.id": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.Id = rapid.SampledFrom([]string{"Practitioner/p1", "Practitioner/n1", "PractitionerRole/r1", "Patient/52", "RelatedPerson/rp1", "Device/d1"}).Draw(t, "subject.id")
	},
	"subject.kind": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.Kind = rapid.SampledFrom([]string{"", "practitioner", "patient", "related-person", "device", "service"}).Draw(t, "subject.kind")
	},
	"subject.identifiers": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.Identifiers = identifiers(t, "subject.identifiers")
	},
	"subject.roles": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.Roles = rapid.SliceOfN(rapid.SampledFrom([]string{"clinician", "nurse", "billing", "support", "patient", "researcher"}), 0, 3).Draw(t, "subject.roles")
	},
	"subject.organization": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.Organization = rapid.SampledFrom([]string{"", "Organization/o1", "Organization/o2"}).Draw(t, "subject.organization")
	},
	"subject.organizationIdentifiers": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.OrganizationIdentifiers = identifiers(t, "subject.organizationIdentifiers")
	},
	"subject.scopes": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.Scopes = rapid.SliceOfN(rapid.SampledFrom([]string{"patient/*.rs", "user/Observation.rs", "system/*.read", "launch/patient"}), 0, 3).Draw(t, "subject.scopes")
	},
	"subject.clientId": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.ClientId = rapid.SampledFrom([]string{"", "portal", "vendor-app"}).Draw(t, "subject.clientId")
	},
	"subject.launchPatient": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Subject.LaunchPatient = rapid.SampledFrom([]string{"", "Patient/52", "Patient/53"}).Draw(t, "subject.launchPatient")
	},
	"action": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Action = rapid.SampledFrom([]string{"read", "vread", "search", "history", "create", "update", "patch", "delete", "export", "operation"}).Draw(t, "action")
	},
	"resource.type": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Type = rapid.SampledFrom([]string{"Observation", "Condition", "Patient", "MedicationRequest", "Encounter", "Claim"}).Draw(t, "resource.type")
	},
	"resource.id": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Id = rapid.StringMatching(`(|[A-Za-z0-9.-]{1,12})`).Draw(t, "resource.id")
	},
	"resource.patient": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Patient = rapid.SampledFrom([]string{"", "Patient/51", "Patient/52", "Patient/53"}).Draw(t, "resource.patient")
	},
	"resource.securityLabels": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.SecurityLabels = codings(t, "resource.securityLabels", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "SUD", "HIV", "PSY")
	},
	"resource.codes": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Codes = codings(t, "resource.codes", "http://loinc.org", "8867-4", "2345-7")
	},
	"resource.categories": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Categories = codings(t, "resource.categories", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "vital-signs")
	},
	"resource.organization": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Organization = rapid.SampledFrom([]string{"", "Organization/o1", "Organization/o2"}).Draw(t, "resource.organization")
	},
	"resource.author": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Author = rapid.SampledFrom([]string{"", "Practitioner/p1", "Patient/52"}).Draw(t, "resource.author")
	},
	"resource.date": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Date = timestamp(t, "resource.date")
	},
	"resource.profiles": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Resource.Profiles = rapid.SliceOfN(rapid.SampledFrom([]string{"http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab", "http://example.org/p"}), 0, 2).Draw(t, "resource.profiles")
	},
	"purposeOfUse": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.PurposeOfUse = rapid.SampledFrom([]string{"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PUBHLTH"}).Draw(t, "purposeOfUse")
	},
	"context.time": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.Time = timestamp(t, "context.time")
	},
	"context.breakGlassReason": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.BreakGlassReason = rapid.SampledFrom([]string{"", "patient unconscious in the emergency department"}).Draw(t, "context.breakGlassReason")
	},
	"context.ip": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.Ip = rapid.SampledFrom([]string{"", "10.1.2.3", "2001:db8::1"}).Draw(t, "context.ip")
	},
	"context.networkZone": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.NetworkZone = rapid.SampledFrom([]string{"", "clinic", "internet"}).Draw(t, "context.networkZone")
	},
	"context.deviceTrust": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.DeviceTrust = rapid.SampledFrom([]string{"", "managed", "unmanaged"}).Draw(t, "context.deviceTrust")
	},
	"context.correlationId": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.CorrelationId = rapid.StringMatching(`(|[a-z0-9-]{1,16})`).Draw(t, "context.correlationId")
	},
	"context.phase": func(t *rapid.T, r *chaperonev1.CheckRequest) {
		r.Context.Phase = rapid.SampledFrom([]string{"", "request", "resource"}).Draw(t, "context.phase")
	},
}

func identifiers(t *rapid.T, label string) []*chaperonev1.Identifier {
	n := rapid.IntRange(0, 2).Draw(t, label+".n")
	var out []*chaperonev1.Identifier
	for i := range n {
		out = append(out, &chaperonev1.Identifier{
			System: rapid.SampledFrom([]string{"", "http://hl7.org/fhir/sid/us-npi"}).Draw(t, fmt.Sprintf("%s[%d].system", label, i)),
			Value:  rapid.StringMatching(`[0-9]{1,10}`).Draw(t, fmt.Sprintf("%s[%d].value", label, i)),
		})
	}
	return out
}

func codings(t *rapid.T, label, system string, codes ...string) []*chaperonev1.Coding {
	n := rapid.IntRange(0, 2).Draw(t, label+".n")
	var out []*chaperonev1.Coding
	for i := range n {
		out = append(out, &chaperonev1.Coding{
			System: rapid.SampledFrom([]string{"", system}).Draw(t, fmt.Sprintf("%s[%d].system", label, i)),
			Code:   rapid.SampledFrom(codes).Draw(t, fmt.Sprintf("%s[%d].code", label, i)),
		})
	}
	return out
}

var exportNow = time.Date(2026, 1, 15, 17, 30, 0, 0, time.UTC)

func timestamp(t *rapid.T, label string) *timestamppb.Timestamp {
	if !rapid.Bool().Draw(t, label+".set") {
		return nil
	}
	nanos := rapid.Int64Range(-3*int64(time.Hour), 3*int64(time.Hour)).Draw(t, label)
	return timestamppb.New(exportNow.Add(time.Duration(nanos)))
}

// leafPaths lists the JSON paths of a message's leaves: scalars, repeated
// fields and well-known types; singular messages of the API are walked.
func leafPaths(md protoreflect.MessageDescriptor, prefix string) []string {
	var out []string
	fs := md.Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		p := prefix + f.JSONName()
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && f.Message().ParentFile().Package() == md.ParentFile().Package() {
			out = append(out, leafPaths(f.Message(), p+".")...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// TestRequestFieldsCoverCheckRequest: the generator draws every field of
// CheckRequest, so a field added to the API is drawn (and must survive the
// audit round trip) before this test passes.
func TestRequestFieldsCoverCheckRequest(t *testing.T) {
	t.Parallel()
	paths := leafPaths((&chaperonev1.CheckRequest{}).ProtoReflect().Descriptor(), "")
	for _, p := range paths {
		if requestFields[p] == nil {
			t.Errorf("the request generator does not draw %s: add it to requestFields (and keep it in audit records if a decision depends on it)", p)
		}
	}
	for p := range requestFields {
		if !slices.Contains(paths, p) {
			t.Errorf("requestFields draws %s, which CheckRequest does not have", p)
		}
	}
}

func genRequest(t *rapid.T) *chaperonev1.CheckRequest {
	req := &chaperonev1.CheckRequest{Subject: &chaperonev1.Subject{}, Resource: &chaperonev1.Resource{}, Context: &chaperonev1.Context{}}
	keys := make([]string, 0, len(requestFields))
	for k := range requestFields {
		keys = append(keys, k)
	}
	slices.Sort(keys) // draws in a fixed order, so rapid can shrink
	for _, k := range keys {
		requestFields[k](t, req)
	}
	if rapid.Bool().Draw(t, "no context") {
		req.Context = nil
	}
	return req
}

// TestExportRequestsRoundTrip: a request decided by the engine, recorded
// in the audit log and exported by `audit export-requests` comes back as
// an equivalent request: every field equal (context.time, when the
// request had none, is the time the decision was made), and replayed it
// gets the same decision, reasons and obligations, also from a log whose
// identifying fields are sealed (--audit-encryption-key-file). Without
// --break-glass-reasons the justification is replaced by a fixed one and
// the decision still does not change.
func TestExportRequestsRoundTrip(t *testing.T) {
	t.Parallel()
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.StoreConsents(consentstore.NewMemory()),
		engine.WithClock(func() time.Time { return exportNow }), engine.WithRequestTime())
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := filepath.Join(t.TempDir(), "audit-keys.json")
	if code, _, stderr := runAudit(t, "keys", "new", "-o", keys, "--id", "k1"); code != 0 {
		t.Fatal(stderr)
	}
	ks, err := keyset.Load(keys)
	if err != nil {
		t.Fatal(err)
	}
	fk, err := audit.NewFieldKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]int{}
	rapid.Check(t, func(rt *rapid.T) {
		sealed := rapid.Bool().Draw(rt, "sealed")
		reqs := rapid.SliceOfN(rapid.Custom(genRequest), 1, 6).Draw(rt, "requests")
		var resps []*chaperonev1.CheckResponse
		for i, req := range reqs {
			if err := v.Validate(req); err != nil {
				rt.Fatalf("the generator drew an invalid request %d: %v", i, err)
			}
			resps = append(resps, eng.Check(ctx, req))
		}
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		sink, err := audit.OpenFile(path)
		if err != nil {
			rt.Fatal(err)
		}
		opts := []audit.Option{audit.WithClock(func() time.Time { return exportNow }), audit.WithSyncDelay(0)}
		if sealed {
			opts = append(opts, audit.WithFieldKeys(fk))
		}
		log := audit.New(sink, opts...)
		for i := range reqs {
			if err := log.Record(ctx, "tester", reqs[i], resps[i]); err != nil {
				rt.Fatal(err)
			}
		}
		if err := log.Close(ctx); err != nil {
			rt.Fatal(err)
		}
		for _, keep := range []bool{true, false} {
			args := []string{"audit", "export-requests", "--file", path}
			if keep {
				args = append(args, "--break-glass-reasons")
			}
			if sealed {
				args = append(args, "--audit-encryption-key-file", keys)
			}
			var out, errb bytes.Buffer
			if code := run(args, strings.NewReader(""), &out, &errb); code != 0 {
				rt.Fatalf("export-requests: exit %d: %s", code, errb.String())
			}
			got, err := bundles.ReadRequests(&out, v)
			if err != nil {
				rt.Fatalf("bundle diff cannot read the export: %v\n%s", err, out.String())
			}
			if len(got) != len(reqs) {
				rt.Fatalf("%d requests exported of %d recorded\n%s", len(got), len(reqs), errb.String())
			}
			for i, g := range got {
				want := proto.Clone(reqs[i]).(*chaperonev1.CheckRequest)
				if want.Context == nil {
					want.Context = &chaperonev1.Context{}
				}
				if want.Context.Time == nil {
					want.Context.Time = timestamppb.New(exportNow)
				}
				if !keep && want.Context.BreakGlassReason != "" {
					want.Context.BreakGlassReason = redactedBreakGlassReason
				}
				if !proto.Equal(g.Msg, want) {
					rt.Fatalf("request %d (keep reasons %t) changed in the round trip:\n got %s\nwant %s", i, keep, g.JSON, protoText(want))
				}
				again := eng.Check(ctx, g.Msg)
				if again.GetDecision() != resps[i].GetDecision() || !proto.Equal(again.GetObligations(), resps[i].GetObligations()) ||
					reasonList(again) != reasonList(resps[i]) {
					rt.Fatalf("request %d replayed: %s %s, recorded %s %s", i, again.GetDecision(), reasonList(again), resps[i].GetDecision(), reasonList(resps[i]))
				}
			}
		}
		for _, req := range reqs {
			m := req.ProtoReflect()
			countSet(m, "", set)
		}
	})
	// The property is worthless for a field the generator never set.
	for _, p := range leafPaths((&chaperonev1.CheckRequest{}).ProtoReflect().Descriptor(), "") {
		if set[p] == 0 {
			t.Errorf("no generated request set %s", p)
		}
	}
}

func countSet(m protoreflect.Message, prefix string, set map[string]int) {
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := prefix + f.JSONName()
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && f.Message().ParentFile().Package() == m.Descriptor().ParentFile().Package() {
			countSet(v.Message(), p+".", set)
			return true
		}
		set[p]++
		return true
	})
}

func reasonList(resp *chaperonev1.CheckResponse) string {
	var parts []string
	for _, r := range resp.GetReasons() {
		parts = append(parts, r.GetCode()+"@"+r.GetPolicyId())
	}
	return strings.Join(parts, ",")
}

func protoText(m proto.Message) string {
	b, _ := protojsonCompact(m)
	return string(b)
}

func protojsonCompact(m proto.Message) ([]byte, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	return compactJSON(raw)
}

func TestExportRequestsCommand(t *testing.T) {
	t.Parallel()
	path, _ := writeAuditLog(t, sampleDecisions())
	export := func(t *testing.T, args ...string) (int, []string, string) {
		t.Helper()
		code, out, errb := runAudit(t, append([]string{"audit", "export-requests", "--file", path}, args...)...)
		return code, strings.Split(strings.TrimSuffix(out, "\n"), "\n"), errb
	}
	code, all, stderr := export(t)
	if code != 0 || len(all) != 16 || !strings.Contains(stderr, "exported 16 requests of 16 decisions") {
		t.Fatalf("export: exit %d, %d lines, %s", code, len(all), stderr)
	}
	if !strings.Contains(all[2], `"breakGlassReason":"`+redactedBreakGlassReason+`"`) {
		t.Errorf("the break-glass justification is not replaced: %s", all[2])
	}
	for _, tc := range []struct {
		name  string
		args  []string
		lines []string
		err   string
	}{
		{"window", []string{"--since", day.Add(time.Minute).Format(time.RFC3339), "--until", day.Add(3 * time.Minute).Format(time.RFC3339)},
			all[1:3], "exported 2 requests of 2 decisions"},
		{"justifications as recorded: the one too short to be valid today is left out", []string{"--break-glass-reasons"},
			append(slices.Clone(all[:2]), all[3:]...), "1 records left out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, lines, stderr := export(t, tc.args...)
			if code != 0 || !slices.Equal(lines, tc.lines) || !strings.Contains(stderr, tc.err) {
				t.Errorf("exit %d, stderr %q\n got %q\nwant %q", code, stderr, lines, tc.lines)
			}
		})
	}
	t.Run("sample", func(t *testing.T) {
		t.Parallel()
		_, a, stderr := export(t, "--sample", "5", "--seed", "7")
		_, b, _ := export(t, "--sample", "5", "--seed", "7")
		if len(a) != 5 || !slices.Equal(a, b) || !strings.Contains(stderr, "exported 5 requests of 16 decisions") {
			t.Fatalf("sample: %d lines, the same again %t, %s", len(a), slices.Equal(a, b), stderr)
		}
		last := -1
		for _, l := range a {
			i := slices.Index(all, l)
			if i <= last {
				t.Fatalf("sampled line %q is not a recorded request in log order", l)
			}
			last = i
		}
		// Every record can be drawn: over seeds, each of the 16 is picked.
		seen := map[string]bool{}
		for seed := range 40 {
			_, s, _ := export(t, "--sample", "3", "--seed", fmt.Sprint(seed))
			for _, l := range s {
				seen[l] = true
			}
		}
		if len(seen) != 16 {
			t.Errorf("40 samples of 3 drew %d distinct records of 16", len(seen))
		}
	})
	t.Run("to a file", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "reqs.jsonl")
		if code, lines, stderr := export(t, "-o", out); code != 0 || lines[0] != "" {
			t.Fatalf("exit %d, stdout %q, %s", code, lines, stderr)
		}
		got, err := os.ReadFile(out)
		if err != nil || string(got) != strings.Join(all, "\n")+"\n" {
			t.Errorf("file: %v\n%s", err, got)
		}
	})
	t.Run("sealed", func(t *testing.T) {
		t.Parallel()
		keys := filepath.Join(t.TempDir(), "audit-keys.json")
		if code, _, stderr := runAudit(t, "keys", "new", "-o", keys, "--id", "a1"); code != 0 {
			t.Fatal(stderr)
		}
		ks, err := keyset.Load(keys)
		if err != nil {
			t.Fatal(err)
		}
		fk, err := audit.NewFieldKeys(ks)
		if err != nil {
			t.Fatal(err)
		}
		sealedLog, _ := writeAuditLog(t, sampleDecisions(), audit.WithFieldKeys(fk))
		code, out, stderr := runAudit(t, "audit", "export-requests", "--file", sealedLog, "--audit-encryption-key-file", keys)
		if code != 0 || out != strings.Join(all, "\n")+"\n" {
			t.Errorf("sealed log with its key: exit %d %s\n%s", code, stderr, out)
		}
		if code, out, stderr := runAudit(t, "audit", "export-requests", "--file", sealedLog); code != 2 || out != "" || !strings.Contains(stderr, "--audit-encryption-key-file") {
			t.Errorf("sealed log without its key: exit %d, %q, %s", code, out, stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		if code, _, stderr := export(t, "--sample", "-1"); code != 2 || !strings.Contains(stderr, "--sample") {
			t.Errorf("--sample -1: exit %d %s", code, stderr)
		}
		if code, _, stderr := runAudit(t, "audit", "export-requests", "--file", filepath.Join(t.TempDir(), "none.jsonl")); code != 2 || !strings.Contains(stderr, "audit log") {
			t.Errorf("missing log: exit %d %s", code, stderr)
		}
	})
}

// TestExportRequestsRedis: export-requests --redis reads the decisions of
// a Redis audit stream and writes what it writes for the same decisions in
// a file log.
func TestExportRequestsRedis(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	url := "redis://" + addr
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	af := addAuditFlags(fs)
	if err := fs.Parse([]string{"--audit-redis", url, "--audit-stream", "chaperone:audit:r1", "--audit-instance", "r1", "--audit-ack", "durable"}); err != nil {
		t.Fatal(err)
	}
	l, err := af.open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range sampleDecisions() {
		req, resp := d.messages(i)
		if err := l.Record(context.Background(), "", req, resp); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	file, _ := writeAuditLog(t, sampleDecisions())
	code, want, stderr := runAudit(t, "audit", "export-requests", "--file", file)
	if code != 0 {
		t.Fatalf("file: %d %s", code, stderr)
	}
	code, got, stderr := runAudit(t, "audit", "export-requests", "--redis", url, "--sample", "4")
	if n := strings.Count(got, "\n"); code != 0 || n != 4 || !strings.Contains(stderr, "exported 4 requests of 16 decisions") {
		t.Errorf("--redis --sample 4: exit %d, %d lines, %s", code, n, stderr)
	}
	code, got, stderr = runAudit(t, "audit", "export-requests", "--redis", url, "--stream", "chaperone:audit:r1")
	if code != 0 || got != want || !strings.Contains(stderr, "exported 16 requests of 16 decisions") {
		t.Errorf("--redis: exit %d %s\n got %s\nwant %s", code, stderr, got, want)
	}
}
