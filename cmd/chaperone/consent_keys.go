package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/consentstore"
)

// newConsentReencryptCmd is "chaperone consent reencrypt": rewrite every
// record in Redis under the primary key of the key set.
func newConsentReencryptCmd(e *env) *cobra.Command {
	var (
		rf         redisFlags
		checkpoint string
		count      int
		prefix     string
	)
	cmd := &cobra.Command{
		Use:   "reencrypt --redis URL --encryption-key-file FILE [--checkpoint FILE]",
		Short: "Rewrite every consent, grant and agreement in Redis under the primary key (resumable)",
		Long: `reencrypt walks the Redis keys (SCAN, every master of a Cluster) and
rewrites each consent, break-glass grant and vendor agreement that is not
sealed under the primary key of the key set: records under an older key of
the set, and records in clear text (written before encryption was on, which
servers with a key set refuse). Each rewrite replaces only the value it read,
so servers may run meanwhile. Progress goes to stderr; with --checkpoint the
SCAN cursor is saved after every step and an interrupted run resumes from it
(the file is removed once the walk is done). A record under a key the set
does not hold stops the walk (exit 1): put that key back in the set. Once a
run ends with "done", keys that are not the primary can be dropped
(chaperone keys drop). Exit 0 done, 1 stopped, 2 usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rf.url == "" {
				return usageErrorf("--redis is required")
			}
			ks, err := loadKeySet(rf.keyFile, os.Getenv)
			if err != nil {
				return usageErrorf("%v", err)
			}
			if ks == nil {
				return usageErrorf("--encryption-key-file (or $%s) is required: the key set to rewrite under", encryptionKeyEnv)
			}
			client, err := newRedisClient(rf.url, rf.timeout)
			if err != nil {
				return usageErrorf("--redis: %v", err)
			}
			defer client.Close()
			st, err := consentstore.NewRedis(client, consentstore.WithKeySet(ks), consentstore.WithRedisPrefix(prefix),
				consentstore.WithRedisTimeout(rf.timeout), consentstore.WithCache(0, 0), consentstore.WithRedisLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				return usageErrorf("%v", err)
			}
			defer st.Close()
			cursor, err := readCursor(checkpoint)
			if err != nil {
				return usageErrorf("--checkpoint: %v", err)
			}
			if cursor != "" {
				fmt.Fprintf(e.stderr, "resuming at cursor %s (from %s)\n", cursor, checkpoint)
			}
			p, err := st.Reencrypt(cmd.Context(), cursor, count, func(p consentstore.ReencryptProgress) error {
				fmt.Fprintf(e.stderr, "keys %d, rewritten: consents %d, grants %d, agreements %d; current %d, changed meanwhile %d\n",
					p.Keys, p.Consents, p.Grants, p.Agreements, p.Current, p.Changed)
				if checkpoint == "" || p.Done {
					return nil
				}
				return writeCursor(checkpoint, p.Cursor)
			})
			if err != nil {
				return fmt.Errorf("reencrypt: %w", err)
			}
			if checkpoint != "" {
				if err := os.Remove(checkpoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			primary, _ := ks.Primary()
			b, _ := json.Marshal(p)
			fmt.Fprintf(e.stdout, "done: every record is sealed under key %s %s\n", primary, b)
			if p.Changed > 0 {
				fmt.Fprintf(e.stdout, "%d records changed while being rewritten; run again to check them\n", p.Changed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rf.url, "redis", "", "the Redis holding the records (same forms as serve --redis)")
	cmd.Flags().StringVar(&rf.keyFile, "encryption-key-file", "", "the key set: its primary key seals, all its keys open")
	cmd.Flags().DurationVar(&rf.timeout, "redis-timeout", 5*time.Second, "bound of every Redis call")
	cmd.Flags().StringVar(&checkpoint, "checkpoint", "", "file keeping the SCAN cursor, to resume an interrupted run")
	cmd.Flags().IntVar(&count, "count", 100, "keys per SCAN step")
	cmd.Flags().StringVar(&prefix, "prefix", consentstore.DefaultRedisPrefix, "key prefix of the store")
	return cmd
}

func readCursor(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

func writeCursor(path, cursor string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cursor+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newConsentPruneCmd is "chaperone consent prune": remove revoked records
// whose history is past retention from Redis.
func newConsentPruneCmd(e *env) *cobra.Command {
	var (
		rf     redisFlags
		before string
		prefix string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "prune --redis URL --before DATE [--dry-run]",
		Short: "Remove consents and vendor agreements revoked before DATE from Redis (history past retention)",
		Long: `prune walks the Redis keys (SCAN, every master of a Cluster) and removes the
consents and vendor agreements revoked before --before: their history is
past retention (keep it six years, the HIPAA retention: --before the date
six years ago). Consents in force are never touched; a consent id stays
bound to its patient. Break-glass grants need no pruning: Redis drops each
once it has expired. Consents revoked before revocation times were kept are
"undated": kept, and dated now, so a prune past retention from now removes
them. The audit log keeps the record of every revocation. Exit 0, 2 usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rf.url == "" || before == "" {
				return usageErrorf("--redis and --before are required")
			}
			t, err := parseDate(before)
			if err != nil {
				return usageErrorf("--before: %v", err)
			}
			client, err := newRedisClient(rf.url, rf.timeout)
			if err != nil {
				return usageErrorf("--redis: %v", err)
			}
			defer client.Close()
			st, err := consentstore.NewRedis(client, consentstore.WithRedisPrefix(prefix), consentstore.WithRedisTimeout(rf.timeout),
				consentstore.WithCache(0, 0), consentstore.WithRedisLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				return usageErrorf("%v", err)
			}
			defer st.Close()
			rep, err := st.PruneRevoked(cmd.Context(), t, dryRun)
			if err != nil {
				return fmt.Errorf("consent prune: %w", err)
			}
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			fmt.Fprintf(e.stdout, "%s: %d revoked consents, %d revoked agreements (revoked before %s); %d revoked consents undated, kept and dated now\n",
				verb, rep.Consents, rep.Agreements, t.Format(time.RFC3339), rep.Undated)
			return nil
		},
	}
	cmd.Flags().StringVar(&rf.url, "redis", "", "the Redis holding the records (same forms as serve --redis)")
	cmd.Flags().DurationVar(&rf.timeout, "redis-timeout", 5*time.Second, "bound of every Redis call")
	cmd.Flags().StringVar(&before, "before", "", "remove what was revoked before this date (2020-01-31) or RFC 3339 time")
	cmd.Flags().StringVar(&prefix, "prefix", consentstore.DefaultRedisPrefix, "key prefix of the store")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count, remove nothing")
	return cmd
}
