// Package bench holds Chaperone's Go benchmarks (engine in-process, the
// Cedar and Rego layers, bare cedar-go on the same policies, Check over
// loopback Connect) and, in README.md, how to reproduce the published figures.
package bench
