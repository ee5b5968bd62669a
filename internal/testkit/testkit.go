// Package testkit holds the fakes that tests of several packages share: a
// consent layer without consents, an audit recorder that keeps its records
// in memory, and the reference-bundle engine and validator most server and
// door tests start from. It is imported by tests only.
package testkit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// NoConsents is an [engine.ConsentEvaluator] for a store without any
// consent: every request about a patient is NO_CONSENT.
type NoConsents struct{}

// EvaluateConsent answers NO_CONSENT.
func (NoConsents) EvaluateConsent(context.Context, *chaperonev1.CheckRequest, time.Time, consent.Rule) (engine.ConsentResult, error) {
	return engine.ConsentResult{Decision: engine.ConsentNoConsent}, nil
}

// Record is one audit record a [Recorder] took.
type Record struct {
	Caller string
	Req    *chaperonev1.CheckRequest
	Resp   *chaperonev1.CheckResponse
}

// Recorder is a server recorder that keeps every record in memory. It is
// safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	records []Record
}

// Record keeps one decision.
func (r *Recorder) Record(_ context.Context, caller string, req *chaperonev1.CheckRequest, resp *chaperonev1.CheckResponse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, Record{caller, req, resp})
	return nil
}

// All returns a copy of the records taken so far.
func (r *Recorder) All() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// ReferenceEngine is an engine without consents deciding with the embedded
// reference bundle, the one most door and server tests ask.
func ReferenceEngine(t testing.TB, opts ...engine.Option) *engine.Engine {
	t.Helper()
	eng := engine.New(NoConsents{}, opts...)
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	return eng
}

// Validator is the request validator every server runs.
func Validator(t testing.TB) *validation.Validator {
	t.Helper()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
