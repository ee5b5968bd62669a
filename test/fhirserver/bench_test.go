package fhirserver_test

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkReadOverhead measures, in one run, a read of one Observation
// straight from the FHIR server and the same read through the proxy
// (token check, request-phase Check, upstream read, resource-phase
// BatchCheck, masks), alternating the two each iteration on one
// keep-alive client: p50 and p99 of each and their ratios.
//
//	go test ./test/fhirserver -run '^$' -bench ReadOverhead -benchtime 3000x
func BenchmarkReadOverhead(b *testing.B) {
	s := startStack(b)
	seed(b, s.upstream)
	token := s.token(b, map[string]any{"fhirUser": "Practitioner/d1", "roles": "clinician", "org": "Organization/o1"})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	read := func(url string, auth bool) time.Duration {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if auth {
			req.Header.Set("Authorization", token)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d", url, resp.StatusCode)
		}
		return d
	}
	for range 50 { // warm both paths
		read(s.upstream+"/Observation/obs-p1", false)
		read(s.proxy+"/Observation/obs-p1", true)
	}
	var direct, proxied []time.Duration
	for b.Loop() {
		direct = append(direct, read(s.upstream+"/Observation/obs-p1", false))
		proxied = append(proxied, read(s.proxy+"/Observation/obs-p1", true))
	}
	pct := func(ds []time.Duration, p float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(p*float64(len(ds)-1))].Microseconds())
	}
	d50, d99, p50, p99 := pct(direct, 0.50), pct(direct, 0.99), pct(proxied, 0.50), pct(proxied, 0.99)
	b.ReportMetric(d50, "direct-p50-µs")
	b.ReportMetric(d99, "direct-p99-µs")
	b.ReportMetric(p50, "proxy-p50-µs")
	b.ReportMetric(p99, "proxy-p99-µs")
	b.ReportMetric(p50/d50, "p50-ratio")
	b.ReportMetric(p99/d99, "p99-ratio")
	mean := func(ds []time.Duration) float64 {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return float64(sum.Microseconds()) / float64(len(ds))
	}
	b.ReportMetric(mean(direct), "direct-mean-µs")
	b.ReportMetric(mean(proxied), "proxy-mean-µs")
	b.ReportMetric(0, "ns/op")
}
