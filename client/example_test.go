package client_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/chaperone-pdp/chaperone/client"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/internal/testkit"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// examplePDP starts a Chaperone server on a loopback port deciding with
// the reference bundle, as `chaperone serve` does; cacheTTL is the
// cacheTtl its answers carry. It returns the server's base URL and a
// function that stops it.
func examplePDP(cacheTTL time.Duration) (string, func()) {
	eng := engine.New(testkit.NoConsents{})
	fsys, err := bundleFS(cacheTTL)
	if err != nil {
		panic(err)
	}
	b, err := engine.LoadBundle(fsys)
	if err != nil {
		panic(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		panic(err)
	}
	hs := server.New(eng, v).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go hs.Serve(ln)
	return "http://" + ln.Addr().String(), func() { hs.Close() }
}

// request is a clinician of Organization/o1 asking to read an
// Observation of resourceOrg for treatment.
func request(resourceOrg string) *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject: &chaperonev1.Subject{
			Id: "Practitioner/p1", Kind: "practitioner", Roles: []string{"clinician"},
			Organization: "Organization/o1",
		},
		Action: "read",
		Resource: &chaperonev1.Resource{
			Type: "Observation", Id: "obs1", Patient: "Patient/52", Organization: resourceOrg,
		},
		PurposeOfUse: "TREAT",
	}
}

func ExampleClient_Check() {
	pdpURL, stop := examplePDP(0)
	defer stop()

	c, err := client.New(pdpURL, client.WithTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	resp := c.Check(context.Background(), request("Organization/o1"))
	fmt.Println(resp.GetDecision(), resp.GetReasons()[0].GetCode())

	resp = c.Check(context.Background(), request("Organization/o2"))
	fmt.Println(resp.GetDecision(), resp.GetReasons()[0].GetCode())
	// Output:
	// DECISION_ALLOW POLICY_PERMIT
	// DECISION_DENY TENANT_MISMATCH
}

// A PDP that cannot be reached is a DENY, never an error to forget to
// handle and never an ALLOW.
func ExampleClient_Check_failClosed() {
	pdpURL, stop := examplePDP(0)
	stop() // the PDP is down

	c, err := client.New(pdpURL, client.WithTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	resp := c.Check(context.Background(), request("Organization/o1"))
	fmt.Println(resp.GetDecision(), resp.GetReasons()[0].GetCode())
	// Output:
	// DECISION_DENY PDP_UNAVAILABLE
}

// With a cache, an answer the server says is reusable for 30s is reused:
// the second Check, with another correlation id, does not reach the server.
func ExampleWithCache() {
	pdpURL, stop := examplePDP(30 * time.Second)
	defer stop()

	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	c, err := client.New(pdpURL, client.WithTimeout(5*time.Second), client.WithCache(10_000), client.WithClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	req := request("Organization/o1")
	req.Context = &chaperonev1.Context{CorrelationId: "first"}
	first := c.Check(context.Background(), req)

	now = now.Add(10 * time.Second)
	req.Context.CorrelationId = "second"
	second := c.Check(context.Background(), req)
	fmt.Println(second.GetDecision(), "same decision:", second.GetDecisionId() == first.GetDecisionId(), "ttl left:", second.GetCacheTtl().AsDuration())

	now = now.Add(20 * time.Second) // expired
	third := c.Check(context.Background(), req)
	fmt.Println(third.GetDecision(), "same decision:", third.GetDecisionId() == first.GetDecisionId())
	// Output:
	// DECISION_ALLOW same decision: true ttl left: 20s
	// DECISION_ALLOW same decision: false
}

func ExampleClient_BatchCheck() {
	pdpURL, stop := examplePDP(0)
	defer stop()

	c, err := client.New(pdpURL, client.WithTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	reqs := []*chaperonev1.CheckRequest{request("Organization/o1"), request("Organization/o2"), request("Organization/o1")}
	for i, resp := range c.BatchCheck(context.Background(), reqs) {
		fmt.Println(i, resp.GetDecision())
	}
	// Output:
	// 0 DECISION_ALLOW
	// 1 DECISION_DENY
	// 2 DECISION_ALLOW
}

// Concurrent Checks within a window are sent as one BatchCheck. Here the
// window is long and a batch holds two, so the second Check sends it.
func ExampleWithBatchWindow() {
	pdpURL, stop := examplePDP(0)
	defer stop()

	c, err := client.New(pdpURL, client.WithTimeout(5*time.Second),
		client.WithBatchWindow(time.Minute), client.WithMaxBatch(2))
	if err != nil {
		panic(err)
	}
	answers := make(chan chaperonev1.Decision, 2)
	go func() { answers <- c.Check(context.Background(), request("Organization/o2")).GetDecision() }()
	go func() { answers <- c.Check(context.Background(), request("Organization/o2")).GetDecision() }()
	fmt.Println(<-answers, <-answers)
	s := c.Stats()
	fmt.Println("BatchCheck calls:", s.Batches, "Check calls:", s.Checks)
	// Output:
	// DECISION_DENY DECISION_DENY
	// BatchCheck calls: 1 Check calls: 0
}

// Caller authentication: a bearer token in a header, or a client
// certificate through an *http.Client whose transport presents it.
func ExampleWithBearerToken() {
	pdpURL, stop := examplePDP(0)
	defer stop()

	var seen string
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r.Header.Get("Authorization")
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, err := client.New(pdpURL, client.WithTimeout(5*time.Second), client.WithHTTPClient(hc), client.WithBearerToken("token-of-the-gateway"))
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Check(context.Background(), request("Organization/o1")).GetDecision(), seen)
	// Output:
	// DECISION_ALLOW Bearer token-of-the-gateway
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
