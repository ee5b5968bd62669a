package consentstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// referral permits Organization/o1 to read patient's record for treatment
// although another organization holds it: crossRequest is ALLOW with it,
// DENY without it.
func referral(t testing.TB, id, patient string) string {
	return fmt.Sprintf(`{"resourceType":"Consent","id":%q,"status":"active","dateTime":"2020-01-01","patient":{"reference":%q},`+
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},`+
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],`+
		`"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},`+
		`"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Organization/o1"}}],`+
		`"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}}`, id, patient)
}

// crossRequest is a clinician of Organization/o1 reading an Observation
// that Organization/o2 holds: allowed only under the patient's referral.
func crossRequest(patient string) *chaperonev1.CheckRequest {
	return &chaperonev1.CheckRequest{
		Subject:      &chaperonev1.Subject{Kind: "practitioner", Id: "Practitioner/p1", Roles: []string{"clinician"}, Organization: "Organization/o1"},
		Action:       "read",
		Resource:     &chaperonev1.Resource{Type: "Observation", Id: "obs-1", Patient: patient, Organization: "Organization/o2"},
		PurposeOfUse: "TREAT",
		Context:      &chaperonev1.Context{NetworkZone: "clinic", DeviceTrust: "managed"},
	}
}

// pdp is one PDP replica: its own client, store and engine.
type pdp struct {
	store *consentstore.Redis
	eng   *engine.Engine
}

// answer is one decision seen under load.
type answer struct {
	at       time.Time
	replica  int
	patient  int
	decision string
}

// load runs Checks on every replica over patients until stop is closed and
// collects the answers.
type load struct {
	mu      sync.Mutex
	answers []answer
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(replicas []pdp, patients int) *load {
	l := &load{stop: make(chan struct{})}
	for ri, r := range replicas {
		l.wg.Go(func() {
			ctx := context.Background()
			for i := 0; i < 1_000_000; i++ { // bounded; stopped by the test
				select {
				case <-l.stop:
					return
				default:
				}
				p := (i*7 + ri) % patients
				res := r.eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p)))
				a := answer{at: time.Now(), replica: ri, patient: p, decision: res.GetDecision().String() + " " + firstCode(res)}
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
				time.Sleep(time.Millisecond) // ~1000 Checks/s per replica: load, not a busy loop
			}
		})
	}
	return l
}

func (l *load) finish() []answer {
	close(l.stop)
	l.wg.Wait()
	return l.answers
}

func isAllow(d string) bool {
	return len(d) >= len("DECISION_ALLOW") && d[:len("DECISION_ALLOW")] == "DECISION_ALLOW"
}
func unavailable(d string) bool { return d == "DECISION_DENY CONSENT_UNAVAILABLE" }

// failoverCase is the part of a failover test that differs between Cluster
// and Sentinel.
type failoverCase struct {
	client func(t testing.TB) redis.UniversalClient
	// victims reports which patients live on the master that will be killed.
	victims func(prefix string, patients int) map[int]bool
	// kill kills that master; promoted waits until its replica serves.
	kill, promoted func()
}

// TestRedisClusterFailover: three PDP replicas on one Cluster under load.
// The referrals of the patients on one master are revoked (each write
// acknowledged by a replica), the master is killed at once: no replica
// ever answers ALLOW for those patients again; their answers are DENY
// CONSENT_UNAVAILABLE until the replica is promoted and correct within 5 s
// after; patients on the other masters keep being answered.
func TestRedisClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	var victim *redistest.Server
	runFailover(t, failoverCase{
		client: func(t testing.TB) redis.UniversalClient { rdb, _ := clusterClient(t, c); return rdb },
		victims: func(prefix string, patients int) map[int]bool {
			victim = c.MasterFor(prefix + ":{Patient/0}:version")
			out := map[int]bool{}
			for p := range patients {
				if c.MasterFor(fmt.Sprintf("%s:{Patient/%d}:version", prefix, p)) == victim {
					out[p] = true
				}
			}
			return out
		},
		kill:     func() { victim.Kill() },
		promoted: c.WaitServing,
	})
}

// TestRedisSentinelFailover is [TestRedisClusterFailover] on Sentinel: the
// master is killed, so every patient is affected until the replica is
// promoted.
// A forced failover (SENTINEL FAILOVER, the old master turned replica)
// is held to the same.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	for _, forced := range []bool{false, true} {
		t.Run(fmt.Sprintf("forced=%v", forced), func(t *testing.T) {
			t.Parallel()
			s := redistest.StartSentinel(t)
			var victim *redistest.Server
			runFailover(t, failoverCase{
				client: func(t testing.TB) redis.UniversalClient { rdb, _ := sentinelClient(t, s); return rdb },
				victims: func(_ string, patients int) map[int]bool {
					victim = s.Master()
					out := map[int]bool{}
					for p := range patients {
						if p%2 == 0 { // half the patients have their referral revoked
							out[p] = true
						}
					}
					return out
				},
				kill: func() {
					if forced {
						s.Failover()
					} else {
						victim.Kill()
					}
				},
				promoted: func() { s.WaitNewMaster(victim) },
			})
		})
	}
}

func runFailover(t *testing.T, fc failoverCase) {
	ctx := context.Background()
	prefix := fmt.Sprintf("fo%d", prefixSeq.Add(1))
	const patients = 60
	var replicas []pdp
	for range 3 {
		s := newRedis(t, fc.client(t), prefix, consentstore.WithMinReplicasAck(1))
		replicas = append(replicas, pdp{store: s, eng: newEngine(t, s)})
	}
	for p := range patients {
		if _, err := replicas[0].store.Put(ctx, mustParseConsent(t, referral(t, fmt.Sprint("ref-", p), fmt.Sprint("Patient/", p)))); err != nil {
			t.Fatal(err)
		}
	}
	for ri, r := range replicas {
		for p := range patients {
			if res := r.eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p))); !isAllow(res.GetDecision().String()) {
				t.Fatalf("replica %d, Patient/%d before the fault: %s %s (want ALLOW under the referral)", ri, p, res.GetDecision(), firstCode(res))
			}
		}
	}
	victims := fc.victims(prefix, patients)
	if len(victims) == 0 {
		t.Fatalf("%d victim patients", len(victims))
	}
	ld := startLoad(replicas, patients)
	time.Sleep(200 * time.Millisecond)
	revokedAt := map[int]time.Time{}
	for p := range victims {
		if _, err := replicas[p%3].store.Revoke(ctx, fmt.Sprint("ref-", p)); err != nil {
			t.Fatalf("revoke ref-%d: %v", p, err)
		}
		revokedAt[p] = time.Now()
	}
	killedAt := time.Now()
	fc.kill()
	// Every replica's next answer for every revoked patient.
	for ri, r := range replicas {
		for p := range victims {
			res := r.eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p)))
			if isAllow(res.GetDecision().String()) {
				t.Errorf("replica %d, Patient/%d right after the kill: ALLOW of a revoked referral", ri, p)
			}
		}
	}
	fc.promoted()
	promotedAt := time.Now()
	// Correct again: every replica answers every patient from Redis
	// (victims DENY without CONSENT_UNAVAILABLE, others ALLOW).
	var recovered time.Duration
	waitFor(t, 10*time.Second, "correct answers after the promotion", func() bool {
		for _, r := range replicas {
			for p := range patients {
				d := r.eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p)))
				ds := d.GetDecision().String() + " " + firstCode(d)
				if victims[p] && (isAllow(ds) || unavailable(ds)) || !victims[p] && !isAllow(ds) {
					return false
				}
			}
		}
		recovered = time.Since(promotedAt)
		return true
	})
	time.Sleep(200 * time.Millisecond)
	answers := ld.finish()

	var wrongAllow, outageVictim, outageVictimUnavail, outageOther, outageOtherAllow, afterUnavail int
	for _, a := range answers {
		switch {
		case victims[a.patient] && a.at.After(revokedAt[a.patient]) && isAllow(a.decision):
			wrongAllow++
			if wrongAllow <= 5 {
				t.Errorf("replica %d answered ALLOW for Patient/%d %s after its revocation was acknowledged", a.replica, a.patient, a.at.Sub(revokedAt[a.patient]))
			}
		}
		inOutage := a.at.After(killedAt) && a.at.Before(promotedAt)
		if inOutage && victims[a.patient] {
			outageVictim++
			if unavailable(a.decision) {
				outageVictimUnavail++
			}
		}
		if inOutage && !victims[a.patient] {
			outageOther++
			if isAllow(a.decision) {
				outageOtherAllow++
			}
		}
		if a.at.After(promotedAt.Add(recovered)) && unavailable(a.decision) {
			afterUnavail++
		}
	}
	t.Logf("%d answers under load; kill → promotion %s; promotion → every replica correct %s; wrong ALLOW %d; "+
		"during the outage: revoked patients %d answers (%d CONSENT_UNAVAILABLE, the rest DENY from the cache dropped/refilled), other patients %d answers (%d ALLOW)",
		len(answers), promotedAt.Sub(killedAt).Round(time.Millisecond), recovered.Round(time.Millisecond), wrongAllow,
		outageVictim, outageVictimUnavail, outageOther, outageOtherAllow)
	if recovered > 5*time.Second {
		t.Errorf("answers correct %s after the promotion, want within 5 s", recovered)
	}
	if afterUnavail > 0 {
		t.Errorf("%d answers CONSENT_UNAVAILABLE after recovery", afterUnavail)
	}
	if patients-len(victims) > 0 && outageOther > 0 && outageOtherAllow == 0 {
		t.Errorf("patients on other masters got no ALLOW during the outage (%d answers)", outageOther)
	}
}

// TestRedisPartition: one PDP replica loses its network to Redis (a proxy
// that black-holes it) while another revokes referrals. Within two ping
// intervals it notices, drops its cache and answers CONSENT_UNAVAILABLE;
// once the network is back it answers from Redis again (the revocations
// in force, never ALLOW).
func TestRedisPartition(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	ctx := context.Background()
	cutClient, _ := newClient(t, proxy.Addr())
	otherClient, _ := newClient(t, srv.Addr())
	cut := newRedis(t, cutClient, "part")
	other := newRedis(t, otherClient, "part")
	eng := newEngine(t, cut)
	const patients = 10
	for p := range patients {
		if _, err := other.Put(ctx, mustParseConsent(t, referral(t, fmt.Sprint("ref-", p), fmt.Sprint("Patient/", p)))); err != nil {
			t.Fatal(err)
		}
		if res := eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p))); !isAllow(res.GetDecision().String()) {
			t.Fatalf("Patient/%d before the partition: %s", p, res.GetDecision())
		}
	}
	proxy.Cut()
	cutAt := time.Now()
	for p := range patients {
		if _, err := other.Revoke(ctx, fmt.Sprint("ref-", p)); err != nil {
			t.Fatal(err)
		}
	}
	// The cut replica cannot hear the revocations: once it notices the
	// lost subscription (PING unanswered, at most two ping intervals) it
	// drops its cache and answers CONSENT_UNAVAILABLE.
	var failedClosed time.Duration
	waitFor(t, 3*time.Second, "fail closed", func() bool {
		for p := range patients {
			res := eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p)))
			if !unavailable(res.GetDecision().String() + " " + firstCode(res)) {
				return false
			}
		}
		failedClosed = time.Since(cutAt)
		return true
	})
	proxy.Heal()
	healedAt := time.Now()
	var recovered time.Duration
	waitFor(t, 5*time.Second, "recovery", func() bool {
		for p := range patients {
			res := eng.Check(ctx, crossRequest(fmt.Sprint("Patient/", p)))
			d := res.GetDecision().String() + " " + firstCode(res)
			if isAllow(d) {
				t.Fatalf("Patient/%d after the partition: ALLOW of a revoked referral", p)
			}
			if unavailable(d) {
				return false
			}
		}
		recovered = time.Since(healedAt)
		return cut.Stats().Subscribed
	})
	t.Logf("partition: all answers CONSENT_UNAVAILABLE %s after the cut; correct again %s after the network came back",
		failedClosed.Round(time.Millisecond), recovered.Round(time.Millisecond))
}
