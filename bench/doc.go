// Package bench holds Chaperone's benchmarks and the baseline against OPA.
//
// The Go benchmarks measure the engine in-process (a decision against the
// reference bundle with the memo warm and off, beside bare cedar-go
// Authorize on the same policies), each policy layer alone, FHIR consent
// evaluation, 10 against 1000 Cedar policies, Check and BatchCheck over
// loopback Connect, and the OPA comparison pair in-process. The load
// generator behind `chaperone bench` is [github.com/chaperone-pdp/chaperone/bench/load];
// compare.sh runs Chaperone and `opa run --server` side by side with it.
// README.md says how to reproduce every figure, on which machine, and
// which targets were met.
package bench
