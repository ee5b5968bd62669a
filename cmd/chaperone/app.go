package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	"github.com/chaperone-pdp/chaperone/server"
)

// app is what serve and check wire together: the engine with its active
// bundle, and the stores it reads.
type app struct {
	engine     *engine.Engine
	consents   consentstore.Store
	grants     access.Grants
	agreements access.Agreements
	// revocations is the token revocation list (nil: RevokeToken is
	// unimplemented).
	revocations access.Revocations
	// relationships are the treating relationships (RelationshipService).
	relationships consentstore.Relationships
	logger        *slog.Logger
	closers       []func(context.Context) error
	// changes, when set, puts consent, grant and agreement changes on
	// the audit chain (serve sets it to the decision log).
	changes server.ChangeRecorder
	// consentMaxBytes bounds a consent's JSON at ConsentService.Put (0: the default).
	consentMaxBytes int
	// The services serverOptions mounted (the web console reads through them).
	consentSvc      *server.ConsentService
	accessSvc       *server.AccessService
	relationshipSvc *server.RelationshipService
}

// stores are what the engine and the services read and write.
type stores struct {
	consents    consentstore.Store
	grants      access.Grants
	agreements  access.Agreements
	revocations access.Revocations // the token revocation list
	// relationships: nil means an in-memory store.
	relationships consentstore.Relationships
	close         func(context.Context) error // nil: nothing to release
}

// newApp loads the bundle (bundleDir, or the embedded reference bundle) and
// seeds the in-memory consent store from consentsDir when given.
func newApp(ctx context.Context, bundleDir, consentsDir string, logger *slog.Logger, limits consentstore.Limits, opts ...engine.Option) (*app, error) {
	mem := consentstore.NewMemory(consentstore.WithMemoryLimits(limits))
	if consentsDir != "" {
		n, err := mem.Load(ctx, consentsDir)
		if err != nil {
			return nil, usageErrorf("--consents: %v", err)
		}
		if logger != nil {
			logger.Info("consents loaded", slog.Int("count", n), slog.String("from", consentsDir))
		}
	}
	acc := access.NewMemory()
	a, err := newAppWith(bundleDir, stores{consents: mem, grants: acc, agreements: acc, revocations: acc}, logger, opts...)
	if err != nil {
		return nil, err
	}
	a.consentMaxBytes = limits.MaxBytes
	return a, nil
}

// newAppWith wires the engine to st (the in-memory stores, or Redis) and
// loads the bundle; opts add engine options.
func newAppWith(bundleDir string, st stores, logger *slog.Logger, opts ...engine.Option) (*app, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if st.relationships == nil {
		st.relationships = consentstore.NewMemoryRelationships(nil)
	}
	a := &app{consents: st.consents, grants: st.grants, agreements: st.agreements, revocations: st.revocations,
		relationships: st.relationships, logger: logger}
	if st.close != nil {
		a.closers = append(a.closers, st.close)
	}
	a.engine = engine.New(engine.StoreConsents(st.consents), append([]engine.Option{
		engine.WithGrants(st.grants), engine.WithAgreements(st.agreements), engine.WithRelationships(st.relationships),
		engine.WithLogger(logger)}, opts...)...)
	b, err := loadBundleDir(bundleDir)
	if err != nil {
		return nil, errors.Join(err, a.close(context.Background()))
	}
	a.engine.Activate(b)
	return a, nil
}

// newEngine is newApp for one-off commands that only decide. Offline, a
// request is decided at the time it states (context.time), else now.
func newEngine(ctx context.Context, bundleDir, consentsDir string, logger *slog.Logger) (*engine.Engine, error) {
	// Consent files may be dated after now: the requests they are checked
	// against state their own time.
	a, err := newApp(ctx, bundleDir, consentsDir, logger, consentstore.Limits{MaxClockSkew: -1}, engine.WithRequestTime())
	if err != nil {
		return nil, err
	}
	return a.engine, nil
}

// loadBundleDir compiles a policy directory, or the embedded reference
// bundle when dir is empty.
func loadBundleDir(dir string) (*engine.Bundle, error) {
	var fsys fs.FS = policies.FS
	name := "the embedded reference bundle"
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, usageErrorf("--bundle %s: not a policy directory", dir)
		}
		fsys, name = os.DirFS(dir), dir
	}
	b, err := engine.LoadBundle(fsys)
	if err != nil {
		var ce *engine.CompileError
		if errors.As(err, &ce) || errors.Is(err, engine.ErrNoPolicies) || errors.Is(err, fs.ErrNotExist) {
			return nil, usageErrorf("load %s: %v", name, err)
		}
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	return b, nil
}

// serverOptions mounts the services beside DecisionService.
func (a *app) serverOptions() []server.Option {
	co := []server.ConsentOption{server.WithConsentLogger(a.logger), server.WithConsentMaxBytes(a.consentMaxBytes)}
	ao := []server.AccessOption{server.WithAccessLogger(a.logger)}
	agr := []server.AgreementOption{server.WithAgreementLogger(a.logger)}
	if a.revocations != nil {
		ao = append(ao, server.WithRevocations(a.revocations))
	}
	rel := []server.RelationshipOption{server.WithRelationshipLogger(a.logger)}
	if a.changes != nil {
		co = append(co, server.WithConsentAudit(a.changes))
		ao = append(ao, server.WithAccessAudit(a.changes))
		agr = append(agr, server.WithAgreementAudit(a.changes))
		rel = append(rel, server.WithRelationshipAudit(a.changes))
	}
	a.consentSvc = server.NewConsentService(a.consents, co...)
	a.accessSvc = server.NewAccessService(a.grants, ao...)
	a.relationshipSvc = server.NewRelationshipService(a.relationships, rel...)
	return []server.Option{
		server.WithConsentService(a.consentSvc),
		server.WithAccessService(a.accessSvc),
		server.WithAgreementService(server.NewAgreementService(a.agreements, agr...)),
		server.WithRelationshipService(a.relationshipSvc),
	}
}

// close releases what the app holds, in reverse order of opening.
func (a *app) close(ctx context.Context) error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i](ctx))
	}
	return errors.Join(errs...)
}
