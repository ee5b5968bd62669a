package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chaperone-pdp/chaperone/access"
	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/callers"
	"github.com/chaperone-pdp/chaperone/consentstore"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
)

// tokenFlags are serve's flags for revocable tokens: --require-jti and
// RFC 7662 introspection of callers' tokens.
type tokenFlags struct {
	requireJTI       bool
	introspectionURL string
	clientID         string
	clientSecretFile string
	introspectCache  time.Duration
}

func (f *tokenFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.requireJTI, "require-jti", false, "refuse bearer tokens without a jti (callers' tokens and the gateway doors' end-user tokens), so every accepted token can be revoked by its jti")
	fs.StringVar(&f.introspectionURL, "introspection-url", "", "also ask this OAuth 2.0 token introspection endpoint (RFC 7662) whether a caller's token is active; needs --jwks and the client credentials; fails closed")
	fs.StringVar(&f.clientID, "introspection-client-id", "", "client id Chaperone authenticates with at --introspection-url (HTTP Basic)")
	fs.StringVar(&f.clientSecretFile, "introspection-client-secret-file", "", "file holding the client secret for --introspection-url")
	fs.DurationVar(&f.introspectCache, "introspection-cache", callers.DefaultIntrospectionCache, "how long an introspection answer is reused (never past the token's exp)")
}

// introspector builds the introspector of the flags; nil without
// --introspection-url.
func (f *tokenFlags) introspector() (*callers.Introspector, error) {
	if f.introspectionURL == "" {
		if f.clientID != "" || f.clientSecretFile != "" {
			return nil, usageErrorf("--introspection-client-id and --introspection-client-secret-file need --introspection-url")
		}
		return nil, nil
	}
	if f.clientID == "" || f.clientSecretFile == "" {
		return nil, usageErrorf("--introspection-url needs --introspection-client-id and --introspection-client-secret-file")
	}
	if f.introspectCache <= 0 {
		return nil, usageErrorf("--introspection-cache must be positive")
	}
	b, err := os.ReadFile(f.clientSecretFile)
	if err != nil {
		return nil, usageErrorf("--introspection-client-secret-file: %v", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return nil, usageErrorf("--introspection-client-secret-file %s is empty", f.clientSecretFile)
	}
	in, err := callers.NewIntrospector(callers.IntrospectionConfig{URL: f.introspectionURL, ClientID: f.clientID, ClientSecret: secret, CacheTTL: f.introspectCache})
	if err != nil {
		return nil, usageErrorf("--introspection-url: %v", err)
	}
	return in, nil
}

// lateRevocations is the revocation list the token verifiers are built
// with before the stores are open; serve sets it before it listens. Until
// then every lookup fails (the token is refused).
type lateRevocations struct {
	list atomic.Pointer[revocationList]
}

type revocationList struct{ access.Revocations }

var _ callers.RevocationList = (*lateRevocations)(nil)

// errNoRevocationList is a lookup before the store is open.
var errNoRevocationList = errors.New("the token revocation list is not open")

func (l *lateRevocations) set(r access.Revocations) { l.list.Store(&revocationList{r}) }

// TokenRevoked implements [callers.RevocationList].
func (l *lateRevocations) TokenRevoked(ctx context.Context, jti, tokenSHA256 string) (bool, error) {
	r := l.list.Load()
	if r == nil || r.Revocations == nil {
		return false, errNoRevocationList
	}
	return r.TokenRevoked(ctx, jti, tokenSHA256)
}

// newTokensCmd is "chaperone tokens": the token revocation list.
func newTokensCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Revoke bearer tokens before they expire",
	}
	cmd.AddCommand(newTokensRevokeCmd(e))
	return cmd
}

// revokeFlags are the flags of tokens revoke.
type revokeFlags struct {
	jti, sha, tokenFile, until string
	addr, authTokenFile        string
	redis                      string
	redisTimeout               time.Duration
	auditFile, auditRedis      string
	auditStream, auditKey      string
}

func newTokensRevokeCmd(e *env) *cobra.Command {
	var f revokeFlags
	cmd := &cobra.Command{
		Use:   "revoke (--jti ID | --token-sha256 HEX | --token-file FILE) [--until TIME] (--addr URL | --redis URL)",
		Short: "Put a token on the revocation list: every replica refuses it (401) within a second, until its exp",
		Long: `revoke puts a bearer token on the revocation list shared by every replica
(the Redis store, or the in-memory store of one server). Every place a token
is accepted (callers' tokens with serve --jwks, end users' tokens at the
gateway doors) refuses it with 401 / unauthenticated until --until, the
token's exp; the entry then expires on its own.

Name the token by its jti (--jti), by the SHA-256 of the token as sent
(--token-sha256, for a token without a jti), or give the token itself
(--token-file, a file holding the compact token): its jti is used when it
has one, else its hash, and --until defaults to its exp (read, not
verified). --until is RFC 3339 ("2026-12-01T12:00:00Z").

With --addr, the revocation goes through the server's
AccessService.RevokeToken (grant it in the callers file; --auth-token-file
holds your own bearer token), which records it on the audit chain with you
as the caller. With --redis, it is written to Redis directly and recorded on
the audit log given (--audit-file, or --audit-redis with --audit-stream),
as a guest record whose caller is the operating-system user ("local:NAME");
a signed log needs --audit-key. The revocation is recorded before it is
made: when the record cannot be stored nothing is revoked.
Exit 0 when revoked, 1 when the server or Redis refused or failed, 2 for
bad input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if (f.addr == "") == (f.redis == "") {
				return usageErrorf("give --addr (a server) or --redis (the shared store), one of them")
			}
			jti, sha, until, err := f.target(time.Now())
			if err != nil {
				return err
			}
			switch {
			case f.addr != "":
				return revokeViaServer(ctx, e, f, jti, sha, until)
			default:
				return revokeInRedis(ctx, e, f, jti, sha, until)
			}
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.jti, "jti", "", "the jti of the token to revoke")
	fs.StringVar(&f.sha, "token-sha256", "", "the SHA-256 (lower-case hex) of the token to revoke, for a token without a jti")
	fs.StringVar(&f.tokenFile, "token-file", "", "a file holding the token to revoke (its jti, else its hash; its exp is the default --until)")
	fs.StringVar(&f.until, "until", "", "until when the token is refused: its exp (RFC 3339)")
	fs.StringVar(&f.addr, "addr", "", "revoke through the server at this URL (AccessService.RevokeToken), e.g. http://127.0.0.1:8787")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "with --addr: a file holding your bearer token for the server")
	fs.StringVar(&f.redis, "redis", "", "revoke in this Redis store directly (URL as for serve --redis)")
	fs.DurationVar(&f.redisTimeout, "redis-timeout", 5*time.Second, "with --redis: bound of every Redis call")
	fs.StringVar(&f.auditFile, "audit-file", defaultAuditFile, "with --redis: the audit log file the revocation is recorded in")
	fs.StringVar(&f.auditRedis, "audit-redis", "", "with --redis: record the revocation in a Redis audit stream instead (needs --audit-stream)")
	fs.StringVar(&f.auditStream, "audit-stream", "", "with --audit-redis: the stream to record in")
	fs.StringVar(&f.auditKey, "audit-key", "", "with --redis: the Ed25519 key of a signed audit log (signs a checkpoint after the record)")
	return cmd
}

// target is the token the flags name and until when it is refused.
func (f *revokeFlags) target(now time.Time) (jti, sha string, until time.Time, err error) {
	named := 0
	for _, v := range []string{f.jti, f.sha, f.tokenFile} {
		if v != "" {
			named++
		}
	}
	if named != 1 {
		return "", "", time.Time{}, usageErrorf("give one of --jti, --token-sha256 and --token-file")
	}
	jti, sha = f.jti, f.sha
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", "", time.Time{}, usageErrorf("--token-file: %v", err)
		}
		raw := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(b)), "Bearer "))
		var claims struct {
			JTI string   `json:"jti"`
			Exp *float64 `json:"exp"`
		}
		parts := strings.Split(raw, ".")
		payload, derr := base64.RawURLEncoding.DecodeString(strings.TrimRight(partOr(parts, 1), "="))
		if len(parts) != 3 || derr != nil || json.Unmarshal(payload, &claims) != nil {
			return "", "", time.Time{}, usageErrorf("--token-file %s: not a compact JWS (header.payload.signature)", f.tokenFile)
		}
		if claims.JTI != "" {
			jti = claims.JTI
		} else {
			sha = access.TokenSHA256(raw)
		}
		if f.until == "" && claims.Exp != nil {
			until = time.Unix(int64(*claims.Exp), 0).UTC()
		}
	}
	if f.until != "" {
		if until, err = time.Parse(time.RFC3339, f.until); err != nil {
			return "", "", time.Time{}, usageErrorf("--until %q: want RFC 3339, e.g. 2026-12-01T12:00:00Z", f.until)
		}
	}
	if until.IsZero() {
		return "", "", time.Time{}, usageErrorf("--until is required (the token's exp)")
	}
	// The same checks as the server's, so bad input is exit 2 here.
	if _, err := access.NewRevocation(jti, sha, until, "", now); err != nil {
		var inv *access.InvalidError
		if errors.As(err, &inv) {
			return "", "", time.Time{}, usageErrorf("%s %s", flagOf(inv.Field), inv.Message)
		}
		return "", "", time.Time{}, err
	}
	return jti, sha, until, nil
}

func partOr(parts []string, i int) string {
	if i < len(parts) {
		return parts[i]
	}
	return ""
}

// flagOf names the flag of a revocation field.
func flagOf(field string) string {
	switch field {
	case "tokenSha256":
		return "--token-sha256"
	case "until":
		return "--until"
	default:
		return "--jti"
	}
}

func revokeViaServer(ctx context.Context, e *env, f revokeFlags, jti, sha string, until time.Time) error {
	addr := f.addr
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		addr = "http://" + addr
	}
	var opts []connect.ClientOption
	if f.authTokenFile != "" {
		b, err := os.ReadFile(f.authTokenFile)
		if err != nil {
			return usageErrorf("--auth-token-file: %v", err)
		}
		tok := strings.TrimSpace(string(b))
		opts = append(opts, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
				r.Header().Set("Authorization", "Bearer "+tok)
				return next(ctx, r)
			}
		})))
	}
	c := chaperonev1connect.NewAccessServiceClient(&http.Client{Timeout: 30 * time.Second}, strings.TrimRight(addr, "/"), opts...)
	resp, err := c.RevokeToken(ctx, connect.NewRequest(&chaperonev1.AccessServiceRevokeTokenRequest{Jti: jti, TokenSha256: sha, Until: timestamppb.New(until)}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeInvalidArgument {
			return usageErrorf("revoke: %v", err)
		}
		return failedf("revoke: %v", err)
	}
	r := resp.Msg.GetRevocation()
	printRevoked(e, r.GetJti(), r.GetTokenSha256(), r.GetUntil().AsTime(), r.GetRevokedBy())
	return nil
}

func printRevoked(e *env, jti, sha string, until time.Time, by string) {
	what := "jti " + jti
	if jti == "" {
		what = "token sha256 " + sha
	}
	fmt.Fprintf(e.stdout, "revoked %s until %s by %s\n", what, until.UTC().Format(time.RFC3339), by)
}

// revokeInRedis writes the revocation to the Redis store, recorded first
// on the audit log the flags name.
func revokeInRedis(ctx context.Context, e *env, f revokeFlags, jti, sha string, until time.Time) error {
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	caller := localCaller()
	rv, err := access.NewRevocation(jti, sha, until, caller, time.Now())
	if err != nil {
		return usageErrorf("%v", err)
	}
	l, closeAudit, err := f.guestLog(ctx)
	if err != nil {
		return err
	}
	defer closeAudit()
	// The revocation list holds no PHI (a jti or a hash, times, a caller):
	// it is not encrypted, so no consent key is needed here.
	client, err := newRedisClient(f.redis, f.redisTimeout)
	if err != nil {
		return usageErrorf("--redis: %v", err)
	}
	defer client.Close()
	pctx, cancel := context.WithTimeout(ctx, f.redisTimeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		return failedf("redis: %v", err)
	}
	store, err := consentstore.NewRedis(client, consentstore.WithRedisTimeout(f.redisTimeout), consentstore.WithCache(0, 0), consentstore.WithRedisLogger(logger))
	if err != nil {
		return usageErrorf("%v", err)
	}
	defer store.Close()

	u := rv.Until
	c := audit.Change{ID: audit.NewChangeID(), Action: audit.ChangeTokenRevoke, JTI: rv.JTI, TokenSHA256: rv.TokenSHA256, Expires: &u}
	if err := l.Change(ctx, caller, c); err != nil {
		return failedf("the revocation could not be recorded on the audit log, so it was not made: %v", err)
	}
	stored, err := store.RevokeToken(ctx, rv)
	outcome := audit.Change{ID: c.ID, Action: c.Action, Outcome: audit.OutcomeApplied, JTI: rv.JTI, TokenSHA256: rv.TokenSHA256}
	if err != nil {
		outcome.Outcome, outcome.Error = audit.OutcomeFailed, connect.CodeUnavailable.String()
	} else {
		su := stored.Until.UTC()
		outcome.Expires = &su
	}
	oerr := l.ChangeOutcome(context.WithoutCancel(ctx), caller, outcome)
	if err != nil {
		return failedf("revoke: %v", err)
	}
	if oerr != nil {
		fmt.Fprintf(e.stderr, "warning: the outcome record was not stored: %v\n", oerr)
	}
	printRevoked(e, stored.JTI, stored.TokenSHA256, stored.Until, caller)
	return nil
}

// guestLog opens the audit log a revocation with --redis is recorded in,
// as a guest of the server's chain; close drains and closes it.
func (f *revokeFlags) guestLog(ctx context.Context) (*audit.Log, func(), error) {
	if f.auditRedis != "" && f.auditStream == "" {
		return nil, nil, usageErrorf("--audit-redis needs --audit-stream (the stream to record in)")
	}
	src := auditSource{file: f.auditFile, redis: f.auditRedis, stream: f.auditStream}
	chains, rdb, closeSrc, err := src.chains(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(chains) != 1 {
		closeSrc()
		return nil, nil, usageErrorf("no audit log to record the revocation in")
	}
	recs, err := audit.Records(chains[0].entries)
	if err != nil {
		closeSrc()
		return nil, nil, fmt.Errorf("%w (run chaperone audit verify)", err)
	}
	var opts []audit.Option
	if f.auditKey != "" {
		s, err := audit.LoadSigner(f.auditKey)
		if err != nil {
			closeSrc()
			return nil, nil, usageErrorf("--audit-key: %v", err)
		}
		opts = append(opts, audit.WithSigner(s))
	} else if len(recs) > 0 && recs[0].Kind == audit.KindGenesis {
		closeSrc()
		return nil, nil, usageErrorf("the audit log is signed: give --audit-key, or the record breaks its checkpoint cadence")
	}
	joinClosed := false
	if len(recs) > 0 {
		last := recs[len(recs)-1]
		joinClosed = last.Kind == audit.KindCheckpoint && last.Checkpoint != nil && last.Checkpoint.Closed
	}
	opts = append(opts, audit.WithJoin(joinClosed), audit.WithSyncDelay(0))
	var sink audit.Sink
	if rdb != nil {
		sink = audit.NewRedisSink(rdb, chains[0].name)
	} else if sink, err = audit.OpenFile(f.auditFile); err != nil {
		closeSrc()
		return nil, nil, err
	}
	l := audit.New(sink, opts...)
	return l, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.Close(cctx)
		closeSrc()
	}, nil
}

// openRevocations opens the revocation list of the Redis store at url for
// a process that only reads it (the proxy): its lookups are cached and
// invalidated like serve's. close releases it.
func openRevocations(ctx context.Context, url string, timeout time.Duration, logger *slog.Logger) (access.Revocations, func(), error) {
	client, err := newRedisClient(url, timeout)
	if err != nil {
		return nil, nil, usageErrorf("--redis: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("redis: %w", err)
	}
	store, err := consentstore.NewRedis(client, consentstore.WithRedisTimeout(timeout), consentstore.WithRedisLogger(logger))
	if err != nil {
		_ = client.Close()
		return nil, nil, usageErrorf("%v", err)
	}
	return store, func() { _ = store.Close(); _ = client.Close() }, nil
}
