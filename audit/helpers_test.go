package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/audit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// decision returns a request and response as the server would record them.
func decision(i int) (*chaperonev1.CheckRequest, *chaperonev1.CheckResponse) {
	req := &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1", ClientId: "portal"},
		Action: "read",
		Resource: &chaperonev1.Resource{Type: "Observation", Id: fmt.Sprintf("o%d", i), Patient: "Patient/52",
			Organization:   "Organization/o1",
			SecurityLabels: []*chaperonev1.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}}},
		PurposeOfUse: "TREAT",
		Context: &chaperonev1.Context{Time: timestamppb.New(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)),
			Ip: "10.1.2.3", NetworkZone: "clinic", CorrelationId: fmt.Sprintf("c-%d", i)},
	}
	resp := &chaperonev1.CheckResponse{
		Decision:       chaperonev1.Decision_DECISION_ALLOW,
		Obligations:    &chaperonev1.Obligations{MaskPaths: []string{"Observation.note"}},
		Reasons:        []*chaperonev1.Reason{{Code: "POLICY_PERMIT", PolicyId: "clinician-read-clinical-own-org"}},
		DecisionId:     fmt.Sprintf("d-%d", i),
		BundleRevision: "2026.11.25-1",
		Consents:       []*chaperonev1.ConsentRef{{Id: "Consent/c1", Version: "3"}},
	}
	return req, resp
}

func newSigner(t testing.TB) *audit.Signer {
	t.Helper()
	priv, _, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/key.pem"
	writeFile(t, path, priv)
	s, err := audit.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flakySink fails every append while fail is set, else passes to inner.
type flakySink struct {
	inner audit.Sink
	fail  atomic.Bool
	calls atomic.Int64
}

var errSinkDown = errors.New("sink down")

func (f *flakySink) Append(ctx context.Context, b *audit.Batch) error {
	f.calls.Add(1)
	if f.fail.Load() {
		return errSinkDown
	}
	return f.inner.Append(ctx, b)
}

func (f *flakySink) Close() error { return f.inner.Close() }

func closeLog(t testing.TB, l *audit.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
