package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

// TestTokensRevokeRedis: tokens revoke --redis writes the revocation into
// the store serve reads and records it first as a guest on the audit log:
// a signed file log needs the key (refused without it, nothing revoked),
// and with it the log still verifies; a Redis stream log works alike.
func TestTokensRevokeRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	url := "redis://" + srv.Addr() + "/0"
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := consentstore.NewRedis(rdb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	path, key := writeAuditLog(t, sampleDecisions()[:2])

	code, _, stderr := runAudit(t, "tokens", "revoke", "--redis", url, "--jti", "j-unsigned", "--until", until, "--audit-file", path)
	if code != exitUsage || !strings.Contains(stderr, "--audit-key") {
		t.Fatalf("a signed log without --audit-key: exit %d %s, want 2 naming --audit-key", code, stderr)
	}
	if got, err := store.TokenRevoked(ctx, "j-unsigned", ""); err != nil || got {
		t.Fatalf("revoked although not recorded: %v %v", got, err)
	}

	code, stdout, stderr := runAudit(t, "tokens", "revoke", "--redis", url, "--jti", "j-1", "--until", until, "--audit-file", path, "--audit-key", key+".pem")
	if code != 0 || !strings.Contains(stdout, "revoked jti j-1 until "+until+" by local:") {
		t.Fatalf("tokens revoke --redis: exit %d\n%s%s", code, stdout, stderr)
	}
	if got, err := store.TokenRevoked(ctx, "j-1", ""); err != nil || !got {
		t.Errorf("TokenRevoked(j-1) = %v, %v after tokens revoke --redis", got, err)
	}
	if code, stdout, stderr := runAudit(t, "audit", "verify", path, "--pub", key+".pub.pem"); code != 0 {
		t.Fatalf("verify after the guest record: exit %d\n%s%s", code, stdout, stderr)
	}
	recs, err := audit.Records(audit.ReadFiles(path))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Kind == audit.KindChange && r.Change.Action == audit.ChangeTokenRevoke {
			got = append(got, r.Change.JTI+" "+r.Change.Outcome)
			if !strings.HasPrefix(r.Caller, "local:") {
				t.Errorf("caller %q, want local:USER", r.Caller)
			}
		}
	}
	if strings.Join(got, ",") != "j-1 ,j-1 applied" {
		t.Errorf("token.revoke records %q, want the change and its outcome", got)
	}

	// A Redis stream log: the stream must be named.
	stream := audit.DefaultStreamPrefix + "test"
	l := audit.New(audit.NewRedisSink(rdb, stream))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runAudit(t, "tokens", "revoke", "--redis", url, "--jti", "j-2", "--until", until, "--audit-redis", url); code != exitUsage || !strings.Contains(stderr, "--audit-stream") {
		t.Errorf("--audit-redis without --audit-stream: exit %d %s", code, stderr)
	}
	if code, stdout, stderr := runAudit(t, "tokens", "revoke", "--redis", url, "--token-sha256", strings.Repeat("ab", 32), "--until", until, "--audit-redis", url, "--audit-stream", stream); code != 0 {
		t.Fatalf("tokens revoke --audit-redis: exit %d\n%s%s", code, stdout, stderr)
	}
	if got, err := store.TokenRevoked(ctx, "", strings.Repeat("ab", 32)); err != nil || !got {
		t.Errorf("TokenRevoked(hash) = %v, %v", got, err)
	}
	if code, stdout, stderr := runAudit(t, "audit", "changes", "--redis", url, "--stream", stream); code != 0 || !strings.Contains(stdout, "token sha256 "+strings.Repeat("ab", 32)) {
		t.Errorf("audit changes of the stream: exit %d\n%s%s", code, stdout, stderr)
	}
}
