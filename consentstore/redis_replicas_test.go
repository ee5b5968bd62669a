package consentstore_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/test/redistest"
	"github.com/chaperone-pdp/chaperone/validation"
)

// newEngine decides with the reference bundle on a Redis store.
func newEngine(t testing.TB, s *consentstore.Redis) *engine.Engine {
	t.Helper()
	eng := engine.New(engine.StoreConsents(s), engine.WithGrants(s), engine.WithAgreements(s))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	return eng
}

// checkRequest is a clinician's read of an Observation of patient: ALLOW
// under the reference bundle unless a consent denies it.
func checkRequest(patient string) *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "o1", Patient: patient, Organization: "Organization/o1"},
		PurposeOfUse: "TREAT",
	}
}

func firstCode(r *chaperonev1.CheckResponse) string {
	if len(r.GetReasons()) == 0 {
		return ""
	}
	return r.GetReasons()[0].GetCode()
}

// TestRedisFaultKillRestart: every patient has a deny consent. With Redis
// killed mid-traffic every answer is DENY (a still-valid cache hit:
// CONSENT_DENY, or CONSENT_UNAVAILABLE), never ALLOW. After a restart the
// same engine answers from Redis again within 2 s.
func TestRedisFaultKillRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := context.Background()
	client, _ := newClient(t, srv.Addr())
	s := newRedis(t, client, "fault")
	eng := newEngine(t, s)
	const patients = 20
	putAll := func() error {
		for i := range patients {
			if _, err := s.Put(ctx, denyConsent(t, fmt.Sprint("c", i), fmt.Sprint("Patient/", i))); err != nil {
				return err
			}
		}
		return nil
	}
	if err := putAll(); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		counts = map[string]int{}
		after  = map[string]int{} // answers once Redis was killed
		dead   atomic.Bool
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; i < 200_000; i++ { // bounded; stopped after ~1s
				select {
				case <-stop:
					return
				default:
				}
				r := eng.Check(ctx, checkRequest(fmt.Sprint("Patient/", (i+w)%patients)))
				key := r.GetDecision().String() + " " + firstCode(r)
				mu.Lock()
				counts[key]++
				if dead.Load() {
					after[key]++
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	srv.Kill()
	dead.Store(true)
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("answers over the run: %v; after the kill: %v", counts, after)
	for k, n := range counts {
		if k != "DECISION_DENY CONSENT_DENY" && k != "DECISION_DENY CONSENT_UNAVAILABLE" {
			t.Errorf("%d answers %q", n, k)
		}
	}
	if after["DECISION_DENY CONSENT_UNAVAILABLE"] == 0 {
		t.Error("no CONSENT_UNAVAILABLE answer after the kill")
	}

	// Restart (empty: persistence is off), restore the consents, and time
	// until the engine answers from Redis again.
	srv.Restart()
	restarted := time.Now()
	deadline := restarted.Add(2 * time.Second)
	for err := putAll(); err != nil; err = putAll() {
		if time.Now().After(deadline) {
			t.Fatalf("consents could not be restored within 2s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		r := eng.Check(ctx, checkRequest("Patient/3"))
		if firstCode(r) == "CONSENT_DENY" {
			break
		}
		if r.GetDecision() == chaperonev1.Decision_DECISION_ALLOW {
			t.Fatalf("ALLOW after restart: %v", r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered within 2s of the restart: %v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("recovered %s after the restart (consents restored, same engine)", time.Since(restarted).Round(time.Millisecond))
	waitFor(t, 2*time.Second, "cache served again", func() bool { return s.Stats().Subscribed })
}

// replica is one engine and server on a loopback port, on its own Redis
// client and store.
type replica struct {
	consents  chaperonev1connect.ConsentServiceClient
	decisions chaperonev1connect.DecisionServiceClient
}

func startReplica(t *testing.T, addr string) replica {
	t.Helper()
	client, _ := newClient(t, addr)
	s := newRedis(t, client, "replicas")
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(newEngine(t, s), v, server.WithConsentService(server.NewConsentService(s))).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	url := "http://" + ln.Addr().String()
	hc := &http.Client{Timeout: 5 * time.Second}
	return replica{chaperonev1connect.NewConsentServiceClient(hc, url), chaperonev1connect.NewDecisionServiceClient(hc, url)}
}

// TestRedisReplicasVisibility: consents written and revoked through one
// replica are seen by Checks on the other; p99 of the time from the write's
// response to the first Check on the other replica that reflects it.
func TestRedisReplicasVisibility(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	ctx := context.Background()
	one, two := startReplica(t, addr), startReplica(t, addr)
	const patient = "Patient/777"
	check := func() string {
		r, err := two.decisions.Check(ctx, connect.NewRequest(checkRequest(patient)))
		if err != nil {
			t.Fatal(err)
		}
		return r.Msg.GetDecision().String()
	}
	consent, err := structpb.NewStruct(map[string]any{"resourceType": "Consent", "id": "vis", "status": "active",
		"patient": map[string]any{"reference": patient}, "provision": map[string]any{"type": "deny", "actor": []any{map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}}, "reference": map[string]any{"reference": "Organization/o1"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := check(); got != "DECISION_ALLOW" { // warms replica two's cache
		t.Fatalf("before any consent: %s", got)
	}
	const samples = 100 // each: one write and one revocation
	var lat []time.Duration
	wait := func(want string) {
		start := time.Now()
		for i := 0; ; i++ {
			if check() == want {
				lat = append(lat, time.Since(start))
				return
			}
			if time.Since(start) > 2*time.Second || i > 100_000 {
				t.Fatalf("%s not visible on the other replica within 2s", want)
			}
		}
	}
	for range samples {
		if _, err := one.consents.Put(ctx, connect.NewRequest(&chaperonev1.ConsentServicePutRequest{Consent: consent})); err != nil {
			t.Fatal(err)
		}
		wait("DECISION_DENY")
		if _, err := one.consents.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "vis"})); err != nil {
			t.Fatal(err)
		}
		wait("DECISION_ALLOW")
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	t.Logf("visibility on the other replica over %d writes/revocations: p50 %s, p99 %s, max %s",
		len(lat), p(0.50), p(0.99), lat[len(lat)-1])
	if p(0.99) >= time.Second {
		t.Errorf("p99 visibility %s, want < 1s", p(0.99))
	}
}

// BenchmarkRedisCheck: Check on a Redis store with a warm local cache (0
// Redis round trips per Check) and a cold one (1 round trip: the patient's
// consents and grants in one MULTI/EXEC). Round trips are counted with a
// go-redis hook and reported as roundtrips/op.
func BenchmarkRedisCheck(b *testing.B) {
	addr, _ := redistest.Start(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name      string
		cacheSize int
		want      float64
	}{
		{"cache=warm", 1000, 0},
		{"cache=cold", 1, 1}, // two patients alternate through a one-entry cache
	} {
		b.Run(bc.name, func(b *testing.B) {
			client, rt := newClient(b, addr)
			s := newRedis(b, client, "bench", consentstore.WithCache(bc.cacheSize, time.Minute))
			eng := newEngine(b, s)
			reqs := []*chaperonev1.CheckRequest{checkRequest("Patient/b1"), checkRequest("Patient/b2")}
			for i, r := range reqs {
				if _, err := s.Put(ctx, denyConsent(b, fmt.Sprint("bench-", i), r.GetResource().GetPatient())); err != nil {
					b.Fatal(err)
				}
				eng.Check(ctx, r) // warms the cache and the connection
			}
			before := rt.n.Load()
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				r := reqs[0]
				if bc.cacheSize == 1 {
					r = reqs[n%2]
				}
				if resp := eng.Check(ctx, r); firstCode(resp) != "CONSENT_DENY" {
					b.Fatalf("answer %v", resp)
				}
				n++
			}
			perOp := float64(rt.n.Load()-before) / float64(n)
			b.ReportMetric(perOp, "roundtrips/op")
			if perOp != bc.want {
				b.Errorf("%.3f round trips per Check, want %v", perOp, bc.want)
			}
		})
	}
}

var _ redis.Hook = (*roundTrips)(nil)
