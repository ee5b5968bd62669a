// Package testkit holds the fakes that tests of several packages share: a
// consent layer without consents and an audit recorder that keeps its
// records in memory. It is imported by tests only.
package testkit

import (
	"context"
	"sync"
	"time"

	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
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
