package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	"github.com/chaperone-pdp/chaperone/policies"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

// adminServer is a server with every admin service recording its changes
// and decisions in one audit log, behind a guard.
type adminServer struct {
	base     string
	consents *consentstore.Memory
	access   *access.Memory
}

func startAdmin(t *testing.T, l *audit.Log, cfg server.GuardConfig) *adminServer {
	t.Helper()
	return startAdminTLS(t, l, cfg, nil)
}

// startAdminTLS is startAdmin over TLS when tlsCfg is set.
func startAdminTLS(t *testing.T, l *audit.Log, cfg server.GuardConfig, tlsCfg *tls.Config) *adminServer {
	t.Helper()
	cs, acc := consentstore.NewMemory(), access.NewMemory()
	eng := engine.New(engine.StoreConsents(cs), engine.WithGrants(acc), engine.WithAgreements(acc))
	b, err := engine.LoadBundle(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	eng.Activate(b)
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	guard, err := server.NewGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := server.New(eng, v,
		server.WithRecorder(l),
		server.WithMiddleware(guard.Middleware),
		server.WithHandlerOptions(guard.HandlerOptions()...),
		server.WithConsentService(server.NewConsentService(cs, server.WithConsentAudit(l))),
		server.WithAccessService(server.NewAccessService(acc, server.WithAccessAudit(l))),
		server.WithAgreementService(server.NewAgreementService(acc, server.WithAgreementAudit(l))),
	).HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	if tlsCfg != nil {
		server.EnableTLS(hs, tlsCfg)
		go hs.ServeTLS(ln, "", "")
		return &adminServer{base: "https://" + ln.Addr().String(), consents: cs, access: acc}
	}
	go hs.Serve(ln)
	return &adminServer{base: "http://" + ln.Addr().String(), consents: cs, access: acc}
}

// bearer adds a bearer token to every request.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// callerClients are the clients of one caller.
type callerClients struct {
	consents   chaperonev1connect.ConsentServiceClient
	access     chaperonev1connect.AccessServiceClient
	agreements chaperonev1connect.AgreementServiceClient
	decisions  chaperonev1connect.DecisionServiceClient
}

func clientsOf(base string, hc *http.Client) callerClients {
	return callerClients{
		consents:   chaperonev1connect.NewConsentServiceClient(hc, base),
		access:     chaperonev1connect.NewAccessServiceClient(hc, base),
		agreements: chaperonev1connect.NewAgreementServiceClient(hc, base),
		decisions:  chaperonev1connect.NewDecisionServiceClient(hc, base),
	}
}

const changeConsent = `{"resourceType":"Consent","id":"c-audit","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
 "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/52"},
 "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
 "provision":{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Organization/o9"}}]}}`

func readChain(t *testing.T, l *audit.Log, path string) []audit.Record {
	t.Helper()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(audit.ReadFiles(path)); err != nil {
		t.Fatalf("a log with change records does not verify: %v", err)
	}
	recs, err := audit.Records(audit.ReadFiles(path))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Every admin action of a real server is on the decision chain, attributed
// to the authenticated caller (two callers told apart), with what it
// changed; decisions name their caller too; a grant's grantedBy is the
// caller whatever the request says.
func TestAdminChangesOnTheChain(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	idp := newSigner(t, "k1")
	js := newJWKSServer(t, jwksJSON(t, idp))
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "alice", Subjects: []string{"alice"}, Allow: []string{"*"}},
		{Name: "bob", Subjects: []string{"bob"}, Allow: []string{"*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := startAdmin(t, l, server.GuardConfig{JWT: newVerifier(t, js.url, time.Second), Authorizer: authz})
	alice := clientsOf(s.base, &http.Client{Transport: bearer(idp.sign(t, claims{sub: "alice"})), Timeout: 10 * time.Second})
	bob := clientsOf(s.base, &http.Client{Transport: bearer(idp.sign(t, claims{sub: "bob"})), Timeout: 10 * time.Second})
	ctx := context.Background()

	put, err := alice.consents.Put(ctx, putReq(t, changeConsent))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.consents.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "c-audit"})); err != nil {
		t.Fatal(err)
	}
	const reason = "unconscious patient in the emergency room"
	grant, err := alice.access.GrantBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
		Subject: "Practitioner/7", Patient: "Patient/52", Reason: reason, GrantedBy: "Practitioner/somebody-else"}))
	if err != nil {
		t.Fatal(err)
	}
	g := grant.Msg.GetGrant()
	if g.GetGrantedBy() != "alice" {
		t.Errorf("grantedBy = %q, want the authenticated caller alice (not the request's text)", g.GetGrantedBy())
	}
	if stored, _ := s.access.ListGrants(ctx, "Practitioner/7", ""); len(stored) != 1 || stored[0].GrantedBy != "alice" {
		t.Errorf("stored grants = %+v, want one granted by alice", stored)
	}
	if _, err := bob.access.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{Id: g.GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.access.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{Id: "no-such-grant"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("revoke of an unknown grant: %v, want not_found", err)
	}
	if _, err := alice.agreements.Put(ctx, connect.NewRequest(&chaperonev1.AgreementServicePutRequest{Agreement: &chaperonev1.Agreement{
		ClientId: "vendor-app", Vendor: "Vendor Inc", Tier: "business-associate", BaaSigned: true,
		Purposes: []string{"TREAT"}, ResourceTypes: []string{"Observation"}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.agreements.Revoke(ctx, connect.NewRequest(&chaperonev1.AgreementServiceRevokeRequest{ClientId: "vendor-app"})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []callerClients{alice, bob} {
		if _, err := c.decisions.Check(ctx, connect.NewRequest(checkRequest(t))); err != nil {
			t.Fatal(err)
		}
	}

	recs := readChain(t, l, path)
	var deciders []string
	for _, r := range recs {
		if r.Kind == audit.KindDecision {
			deciders = append(deciders, r.Caller)
		}
	}
	if len(deciders) != 2 || deciders[0] != "alice" || deciders[1] != "bob" {
		t.Errorf("decision callers = %q, want [alice bob]", deciders)
	}
	got := audit.Changes(recs, "", audit.Window{})
	want := []struct {
		action       audit.ChangeAction
		caller       string
		outcome      string
		errCode      string
		patient      string
		target, more string
	}{
		{audit.ChangeConsentPut, "alice", audit.OutcomeApplied, "", "Patient/52", "c-audit", put.Msg.GetVersion()},
		{audit.ChangeConsentRevoke, "bob", audit.OutcomeApplied, "", "Patient/52", "c-audit", "active"},
		{audit.ChangeGrant, "alice", audit.OutcomeApplied, "", "Patient/52", g.GetId(), reason},
		{audit.ChangeGrantRevoke, "bob", audit.OutcomeApplied, "", "Patient/52", g.GetId(), "Practitioner/7"},
		{audit.ChangeGrantRevoke, "bob", audit.OutcomeFailed, "not_found", "", "no-such-grant", ""},
		{audit.ChangeAgreementPut, "alice", audit.OutcomeApplied, "", "", "vendor-app", "Vendor Inc"},
		{audit.ChangeAgreementRevoke, "bob", audit.OutcomeApplied, "", "", "vendor-app", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		c := got[i]
		target := c.ConsentID + c.GrantID + c.ClientID
		more := map[audit.ChangeAction]string{
			audit.ChangeConsentPut: c.Version, audit.ChangeConsentRevoke: c.Status, audit.ChangeGrant: c.Reason,
			audit.ChangeGrantRevoke: c.Subject, audit.ChangeAgreementPut: c.Vendor,
		}[c.Action]
		if c.Action != w.action || c.Caller != w.caller || c.Outcome != w.outcome || c.Error != w.errCode ||
			c.Patient != w.patient || target != w.target || more != w.more {
			t.Errorf("change %d = %+v\nwant %+v", i, c, w)
		}
	}
	if c := got[2]; c.Subject != "Practitioner/7" || c.Expires == nil || !c.Expires.Equal(g.GetExpireTime().AsTime()) {
		t.Errorf("grant change = %+v, want subject Practitioner/7 expiring %v", c, g.GetExpireTime().AsTime())
	}
	if c := got[0]; c.Status != "active" || c.FHIRVersion == "" || c.CorrelationID == "" {
		t.Errorf("consent change = %+v, want status active, the FHIR version and the correlation id", c)
	}
	if ps := audit.Changes(recs, "Patient/52", audit.Window{}); len(ps) != 4 {
		t.Errorf("changes about Patient/52 = %d, want 4 (consent put and revoke, grant and revoke)", len(ps))
	}
}

// failingRecorder is a change recorder that cannot store anything.
type failingRecorder struct{}

func (failingRecorder) Change(context.Context, string, audit.Change) error {
	return audit.ErrUnavailable
}
func (failingRecorder) ChangeOutcome(context.Context, string, audit.Change) error {
	return audit.ErrUnavailable
}

// When a change's record cannot be stored the RPC fails with unavailable
// and the change is not made: the stores hold nothing, and no grant opens a
// record. The real log behind a sink that is down answers so too.
func TestAdminChangeRefusedWithoutAudit(t *testing.T) {
	t.Parallel()
	for name, newRec := range map[string]func(t *testing.T) server.ChangeRecorder{
		"recorder fails": func(*testing.T) server.ChangeRecorder { return failingRecorder{} },
		"sink down": func(t *testing.T) server.ChangeRecorder {
			l := audit.New(downSink{}, audit.WithChangeTimeout(50*time.Millisecond))
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				_ = l.Close(ctx)
			})
			return l
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := newRec(t)
			cs, acc := consentstore.NewMemory(), access.NewMemory()
			v, err := validation.New()
			if err != nil {
				t.Fatal(err)
			}
			eng := engine.New(engine.StoreConsents(cs), engine.WithGrants(acc), engine.WithAgreements(acc))
			hs := server.New(eng, v,
				server.WithConsentService(server.NewConsentService(cs, server.WithConsentAudit(rec))),
				server.WithAccessService(server.NewAccessService(acc, server.WithAccessAudit(rec))),
				server.WithAgreementService(server.NewAgreementService(acc, server.WithAgreementAudit(rec))),
			).HTTPServer()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go hs.Serve(ln)
			t.Cleanup(func() { hs.Close() })
			c := clientsOf("http://"+ln.Addr().String(), &http.Client{Timeout: 10 * time.Second})
			ctx := context.Background()
			// A consent and an agreement stored before, to revoke.
			parsed, err := fhirconsent.Parse([]byte(changeConsent))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cs.Put(ctx, parsed); err != nil {
				t.Fatal(err)
			}
			if _, err := acc.PutAgreement(ctx, access.Agreement{ClientID: "kept", Vendor: "V", BAASigned: true}); err != nil {
				t.Fatal(err)
			}
			calls := map[string]func() error{
				"consent put": func() error {
					_, err := c.consents.Put(ctx, putReq(t, `{"resourceType":"Consent","id":"new","status":"active","patient":{"reference":"Patient/9"}}`))
					return err
				},
				"consent revoke": func() error {
					_, err := c.consents.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: "c-audit"}))
					return err
				},
				"grant": func() error {
					_, err := c.access.GrantBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
						Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room"}))
					return err
				},
				"agreement put": func() error {
					_, err := c.agreements.Put(ctx, connect.NewRequest(&chaperonev1.AgreementServicePutRequest{Agreement: &chaperonev1.Agreement{
						ClientId: "new-app", Vendor: "V", BaaSigned: true}}))
					return err
				},
				"agreement revoke": func() error {
					_, err := c.agreements.Revoke(ctx, connect.NewRequest(&chaperonev1.AgreementServiceRevokeRequest{ClientId: "kept"}))
					return err
				},
			}
			for what, call := range calls {
				if err := call(); connect.CodeOf(err) != connect.CodeUnavailable {
					t.Errorf("%s: %v, want unavailable", what, err)
				}
			}
			if _, err := cs.Get(ctx, "new"); !errors.Is(err, consentstore.ErrNotFound) {
				t.Errorf("the refused consent was stored: %v", err)
			}
			if rec, err := cs.Get(ctx, "c-audit"); err != nil || rec.Revoked {
				t.Errorf("the refused revocation took effect: %+v %v", rec, err)
			}
			if gs, err := acc.ListGrants(ctx, "", ""); err != nil || len(gs) != 0 {
				t.Errorf("grants after a refused grant: %+v %v", gs, err)
			}
			if _, err := acc.GetAgreement(ctx, "new-app"); !errors.Is(err, access.ErrNotFound) {
				t.Errorf("the refused agreement was stored: %v", err)
			}
			if a, err := acc.GetAgreement(ctx, "kept"); err != nil || a.Revoked {
				t.Errorf("the refused agreement revocation took effect: %+v %v", a, err)
			}
		})
	}
}

// Without caller authentication (the loopback default) changes and
// decisions are attributed to anonymous-loopback, and so is a grant.
func TestAnonymousCallerName(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	s := startAdmin(t, l, server.GuardConfig{})
	c := clientsOf(s.base, &http.Client{Timeout: 10 * time.Second})
	grant, err := c.access.GrantBreakGlass(context.Background(), connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
		Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room"}))
	if err != nil {
		t.Fatal(err)
	}
	if grant.Msg.GetGrant().GetGrantedBy() != audit.CallerAnonymousLoopback {
		t.Errorf("grantedBy = %q", grant.Msg.GetGrant().GetGrantedBy())
	}
	if _, err := c.decisions.Check(context.Background(), connect.NewRequest(checkRequest(t))); err != nil {
		t.Fatal(err)
	}
	recs := readChain(t, l, path)
	n := 0
	for _, r := range recs {
		if r.Kind == audit.KindDecision || r.Kind == audit.KindChange {
			n++
			if r.Caller != audit.CallerAnonymousLoopback {
				t.Errorf("%s record caller = %q", r.Kind, r.Caller)
			}
		}
	}
	if n != 3 { // the grant, its outcome, the decision
		t.Errorf("%d records, want 3", n)
	}
}

// switchSink fails while down is set, else appends to the file sink.
type switchSink struct {
	*audit.FileSink
	down atomic.Bool
}

func (s *switchSink) Append(ctx context.Context, b *audit.Batch) error {
	if s.down.Load() {
		return errors.New("disk gone")
	}
	return s.FileSink.Append(ctx, b)
}

// A change whose record timed out while the sink was down is refused and
// not made; when the sink comes back the record is written after all, and
// its outcome says the change failed, so the history never shows a change
// that did not happen as made.
func TestAdminChangeRecordedLateReadsFailed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sink := &switchSink{FileSink: fs}
	sink.down.Store(true)
	l := audit.New(sink, audit.WithChangeTimeout(50*time.Millisecond), audit.WithSyncDelay(0))
	s := startAdmin(t, l, server.GuardConfig{})
	c := clientsOf(s.base, &http.Client{Timeout: 10 * time.Second})
	_, err = c.access.GrantBreakGlass(context.Background(), connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
		Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room"}))
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("grant with the audit sink down: %v, want unavailable", err)
	}
	if gs, _ := s.access.ListGrants(context.Background(), "", ""); len(gs) != 0 {
		t.Fatalf("the refused grant was stored: %+v", gs)
	}
	sink.down.Store(false) // the writer retries and stores the queued records
	recs := readChain(t, l, path)
	cs := audit.Changes(recs, "", audit.Window{})
	if len(cs) != 1 || cs[0].Action != audit.ChangeGrant || cs[0].Outcome != audit.OutcomeFailed || cs[0].Error != "unavailable" {
		t.Fatalf("changes = %+v, want the grant, failed (unavailable)", cs)
	}
}

// flakyRecorder is the audit log with a fault: while fail is set it
// refuses change records (as a log whose sink is down does).
type flakyRecorder struct {
	*audit.Log
	fail atomic.Bool
}

func (f *flakyRecorder) Change(ctx context.Context, caller string, c audit.Change) error {
	if f.fail.Load() {
		return audit.ErrUnavailable
	}
	return f.Log.Change(ctx, caller, c)
}

// No change without its record, as a property: over random sequences of
// admin calls with the audit failing at random, every call answered OK has
// an applied change on the chain, none refused has one, and replaying the
// applied changes gives exactly what the stores hold.
func TestNoChangeWithoutItsRecord(t *testing.T) {
	t.Parallel()
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 16))
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			sink, err := audit.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rec := &flakyRecorder{Log: audit.New(sink, audit.WithSyncDelay(0))}
			cs, acc := consentstore.NewMemory(), access.NewMemory()
			v, err := validation.New()
			if err != nil {
				t.Fatal(err)
			}
			hs := server.New(engine.New(engine.StoreConsents(cs)), v,
				server.WithConsentService(server.NewConsentService(cs, server.WithConsentAudit(rec))),
				server.WithAccessService(server.NewAccessService(acc, server.WithAccessAudit(rec))),
				server.WithAgreementService(server.NewAgreementService(acc, server.WithAgreementAudit(rec))),
			).HTTPServer()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go hs.Serve(ln)
			t.Cleanup(func() { hs.Close() })
			c := clientsOf("http://"+ln.Addr().String(), &http.Client{Timeout: 10 * time.Second})
			ctx := context.Background()

			var grantIDs []string
			ok := map[audit.ChangeAction]int{}
			ids := []string{"a", "b", "c"}
			for range 40 {
				rec.fail.Store(rng.IntN(3) == 0)
				id := ids[rng.IntN(len(ids))]
				var (
					action audit.ChangeAction
					err    error
				)
				switch rng.IntN(6) {
				case 0:
					action = audit.ChangeConsentPut
					_, err = c.consents.Put(ctx, putReq(t, `{"resourceType":"Consent","id":"`+id+`","status":"active","patient":{"reference":"Patient/`+id+`"}}`))
				case 1:
					action = audit.ChangeConsentRevoke
					_, err = c.consents.Revoke(ctx, connect.NewRequest(&chaperonev1.ConsentServiceRevokeRequest{Id: id}))
				case 2:
					action = audit.ChangeGrant
					var resp *connect.Response[chaperonev1.AccessServiceGrantBreakGlassResponse]
					resp, err = c.access.GrantBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
						Subject: "Practitioner/" + id, Patient: "Patient/52", Reason: "unconscious patient in the emergency room"}))
					if err == nil {
						grantIDs = append(grantIDs, resp.Msg.GetGrant().GetId())
					}
				case 3:
					action = audit.ChangeGrantRevoke
					gid := "unknown"
					if len(grantIDs) > 0 {
						gid = grantIDs[rng.IntN(len(grantIDs))]
					}
					_, err = c.access.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{Id: gid}))
				case 4:
					action = audit.ChangeAgreementPut
					_, err = c.agreements.Put(ctx, connect.NewRequest(&chaperonev1.AgreementServicePutRequest{Agreement: &chaperonev1.Agreement{
						ClientId: id, Vendor: "V", BaaSigned: true}}))
				case 5:
					action = audit.ChangeAgreementRevoke
					_, err = c.agreements.Revoke(ctx, connect.NewRequest(&chaperonev1.AgreementServiceRevokeRequest{ClientId: id}))
				}
				switch code := connect.CodeOf(err); {
				case err == nil:
					ok[action]++
				case rec.fail.Load() && code != connect.CodeUnavailable:
					t.Fatalf("%s with the audit failing: %v, want unavailable", action, err)
				case !rec.fail.Load() && code != connect.CodeNotFound:
					t.Fatalf("%s: %v", action, err)
				}
			}

			rec.fail.Store(false)
			recs := readChain(t, rec.Log, path)
			applied := map[audit.ChangeAction]int{}
			consentRevoked, agreementRevoked, grantRevoked := map[string]bool{}, map[string]bool{}, map[string]bool{}
			for _, e := range audit.Changes(recs, "", audit.Window{}) {
				if e.Outcome != audit.OutcomeApplied {
					continue
				}
				applied[e.Action]++
				switch e.Action {
				case audit.ChangeConsentPut, audit.ChangeConsentRevoke:
					consentRevoked[e.ConsentID] = e.Action == audit.ChangeConsentRevoke
				case audit.ChangeAgreementPut, audit.ChangeAgreementRevoke:
					agreementRevoked[e.ClientID] = e.Action == audit.ChangeAgreementRevoke
				case audit.ChangeGrant, audit.ChangeGrantRevoke:
					grantRevoked[e.GrantID] = e.Action == audit.ChangeGrantRevoke
				}
			}
			if fmt.Sprint(applied) != fmt.Sprint(ok) {
				t.Errorf("applied changes on the chain %v, calls answered OK %v", applied, ok)
			}
			for _, id := range ids {
				r, err := cs.Get(ctx, id)
				revoked, recorded := consentRevoked[id]
				if (err == nil) != recorded || (err == nil && r.Revoked != revoked) {
					t.Errorf("consent %s: store %+v %v, chain recorded=%v revoked=%v", id, r, err, recorded, revoked)
				}
				a, err := acc.GetAgreement(ctx, id)
				revoked, recorded = agreementRevoked[id]
				if (err == nil) != recorded || (err == nil && a.Revoked != revoked) {
					t.Errorf("agreement %s: store %+v %v, chain recorded=%v revoked=%v", id, a, err, recorded, revoked)
				}
			}
			gs, err := acc.ListGrants(ctx, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(gs) != len(grantRevoked) {
				t.Errorf("%d grants stored, %d on the chain", len(gs), len(grantRevoked))
			}
			for _, g := range gs {
				if revoked, recorded := grantRevoked[g.ID]; !recorded || g.Revoked != revoked {
					t.Errorf("grant %s: revoked=%v in the store, chain recorded=%v revoked=%v", g.ID, g.Revoked, recorded, revoked)
				}
			}
		})
	}
}

// With mutual TLS the change records name the client certificate's
// identity: a URI SAN as it is, a DNS SAN as dns:NAME.
func TestAdminChangesByCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "chaperone test CA")
	_, srvCert, srvKey := ca.issue(t, true, nil, []string{"localhost"})
	tlsCfg, err := server.NewTLSConfig(server.TLSFiles{
		CertFile:     writeFile(t, dir, "server.pem", srvCert),
		KeyFile:      writeFile(t, dir, "server-key.pem", srvKey),
		ClientCAFile: writeFile(t, dir, "client-ca.pem", ca.pem),
	})
	if err != nil {
		t.Fatal(err)
	}
	const spiffe = "spiffe://chaperone.test/ns/ops/sa/admin"
	authz, err := callers.NewAuthorizer(callers.AuthzConfig{Callers: []callers.CallerGrant{
		{Name: "ops", MTLS: []string{spiffe}, Allow: []string{"*"}},
		{Name: "desk", MTLS: []string{"desk.chaperone.test"}, Allow: []string{"*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := audit.New(sink, audit.WithSyncDelay(0))
	s := startAdminTLS(t, l, server.GuardConfig{MTLS: true, Authorizer: authz}, tlsCfg)
	ops, _, _ := ca.issue(t, false, []string{spiffe}, nil)
	desk, _, _ := ca.issue(t, false, nil, []string{"desk.chaperone.test"})
	ctx := context.Background()
	g, err := clientsOf(s.base, tlsClient(ca, &ops)).access.GrantBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceGrantBreakGlassRequest{
		Subject: "Practitioner/7", Patient: "Patient/52", Reason: "unconscious patient in the emergency room"}))
	if err != nil {
		t.Fatal(err)
	}
	if g.Msg.GetGrant().GetGrantedBy() != spiffe {
		t.Errorf("grantedBy = %q, want %s", g.Msg.GetGrant().GetGrantedBy(), spiffe)
	}
	if _, err := clientsOf(s.base, tlsClient(ca, &desk)).access.RevokeBreakGlass(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeBreakGlassRequest{
		Id: g.Msg.GetGrant().GetId()})); err != nil {
		t.Fatal(err)
	}
	cs := audit.Changes(readChain(t, l, path), "", audit.Window{})
	if len(cs) != 2 || cs[0].Caller != spiffe || cs[1].Caller != "dns:desk.chaperone.test" || cs[1].Outcome != audit.OutcomeApplied {
		t.Fatalf("changes = %+v, want the grant by %s and the revocation by dns:desk.chaperone.test", cs, spiffe)
	}
}
