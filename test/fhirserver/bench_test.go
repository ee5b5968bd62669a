package fhirserver_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxyOverhead measures, in one run, requests straight to the
// FHIR server and the same requests through the proxy, alternating the two
// each iteration on one keep-alive client, and reports p50, p99 and mean
// of each and their ratios:
//
//   - what=read: one Observation (ES256 end-user token verified,
//     request-phase Check, upstream read, resource-phase BatchCheck of one,
//     obligations applied);
//
//   - what=search-100: a page of 100 Observations of one patient (one
//     BatchCheck of 100 resource-phase decisions, pep.Apply on each).
//
//     go test ./test/fhirserver -run '^$' -bench ProxyOverhead -benchtime 1000x
func BenchmarkProxyOverhead(b *testing.B) {
	s := startStack(b)
	seed(b, s.upstream)
	for i := range 93 {
		put(b, s.upstream, fmt.Sprintf(`{"resourceType":"Observation","id":"bulk-%d","meta":{"tag":[{"system":"%s","code":"o1"}]},"status":"final","code":{"text":"bulk"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":%d,"unit":"mg"}}`, i, tenantSystem, i))
	}
	token := s.token(b, map[string]any{"fhirUser": "Practitioner/d1", "roles": "clinician", "org": "Organization/o1"})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(b *testing.B, url string, auth bool, entries int) time.Duration {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if auth {
			req.Header.Set("Authorization", token)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d %s", url, resp.StatusCode, body)
		}
		if entries > 0 && strings.Count(string(body), `"fullUrl"`) != entries {
			b.Fatalf("%s: %d entries, want %d", url, strings.Count(string(body), `"fullUrl"`), entries)
		}
		return d
	}
	for _, tc := range []struct {
		name, path string
		entries    int
	}{
		{"what=read", "/Observation/obs-p1", 0},
		{"what=search-100", "/Observation?subject=Patient/p1&_count=100", 100},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range 20 { // warm both paths
				get(b, s.upstream+tc.path, false, tc.entries)
				get(b, s.proxy+tc.path, true, tc.entries)
			}
			var direct, proxied []time.Duration
			for b.Loop() {
				direct = append(direct, get(b, s.upstream+tc.path, false, tc.entries))
				proxied = append(proxied, get(b, s.proxy+tc.path, true, tc.entries))
			}
			report(b, direct, proxied)
		})
	}
}

func report(b *testing.B, direct, proxied []time.Duration) {
	pct := func(ds []time.Duration, p float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(p*float64(len(ds)-1))].Microseconds())
	}
	mean := func(ds []time.Duration) float64 {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return float64(sum.Microseconds()) / float64(len(ds))
	}
	d50, d99, p50, p99 := pct(direct, 0.50), pct(direct, 0.99), pct(proxied, 0.50), pct(proxied, 0.99)
	b.ReportMetric(d50, "direct-p50-µs")
	b.ReportMetric(d99, "direct-p99-µs")
	b.ReportMetric(p50, "proxy-p50-µs")
	b.ReportMetric(p99, "proxy-p99-µs")
	b.ReportMetric(p50/d50, "p50-ratio")
	b.ReportMetric(p99/d99, "p99-ratio")
	b.ReportMetric(mean(direct), "direct-mean-µs")
	b.ReportMetric(mean(proxied), "proxy-mean-µs")
	b.ReportMetric(0, "ns/op")
}
