package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes r as one JSON object and a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

// WriteText writes r for a person.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := fmt.Sprintf("closed loop, %d workers", r.Concurrency)
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop at %.0f/s, %d workers", r.Rate, r.Concurrency)
	}
	fmt.Fprintf(&b, "target      %s over %s, %s, %.1fs measured\n", r.Target, r.Protocol, mode, r.Duration)
	fmt.Fprintf(&b, "requests    %d (%d errors)\n", r.Requests, r.Errors)
	fmt.Fprintf(&b, "throughput  %.1f/s\n", r.Throughput)
	fmt.Fprintf(&b, "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f)\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max, r.Latency.Mean)
	for _, l := range []struct {
		name string
		l    *Latency
	}{{"service ms", r.Service}, {"send lag ms", r.SendLag}} {
		if l.l != nil {
			fmt.Fprintf(&b, "%-11s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
				l.name, l.l.P50, l.l.P90, l.l.P99, l.l.P999, l.l.Max)
		}
	}
	if r.ServerCPUSeconds > 0 || r.ServerCPUMicrosPerRequest > 0 {
		fmt.Fprintf(&b, "server cpu  %.1f µs per answered request (%.2f s user+system over the window)\n",
			r.ServerCPUMicrosPerRequest, r.ServerCPUSeconds)
	}
	b.WriteString("decisions  ")
	for _, k := range sortedKeys(r.Decisions) {
		fmt.Fprintf(&b, " %s %d", k, r.Decisions[k])
	}
	b.WriteString("\n")
	if len(r.ErrorCodes) > 0 {
		b.WriteString("errors     ")
		for _, k := range sortedKeys(r.ErrorCodes) {
			fmt.Fprintf(&b, " %s %d", k, r.ErrorCodes[k])
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
