package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/audit"
)

// retention is how long audit records are kept: years and days (calendar)
// and a duration. The zero value keeps everything.
type retention struct {
	years, days int
	d           time.Duration
	text        string
}

// parseRetention reads "6y", "90d", "6y30d", a Go duration ("2160h"), or
// "" / "forever" (keep everything).
func parseRetention(s string) (retention, error) {
	r := retention{text: s}
	if s == "" || s == "forever" {
		return retention{}, nil
	}
	rest := s
	for _, unit := range []struct {
		suffix byte
		dst    *int
	}{{'y', &r.years}, {'d', &r.days}} {
		i := strings.IndexByte(rest, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 {
			return retention{}, fmt.Errorf("retention %q: want e.g. 6y, 90d or 2160h", s)
		}
		*unit.dst, rest = n, rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return retention{}, fmt.Errorf("retention %q: want e.g. 6y, 90d or 2160h", s)
		}
		r.d = d
	}
	if r.years == 0 && r.days == 0 && r.d == 0 {
		return retention{}, fmt.Errorf("retention %q: must be positive (or forever)", s)
	}
	return r, nil
}

func (r retention) keepsAll() bool { return r.years == 0 && r.days == 0 && r.d == 0 }

// cutoff is the time before which records are past retention at now.
func (r retention) cutoff(now time.Time) time.Time {
	return now.AddDate(-r.years, 0, -r.days).Add(-r.d)
}

// parseDate reads --before: an RFC 3339 time or a date (UTC midnight).
func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a date (2020-01-31) or an RFC 3339 time", s)
	}
	return t, nil
}

// pruneLog prunes the file log at path and records the prune on it (as a
// guest writer: serve may be writing to it). log, when given, is the
// running server's own log, which records it instead.
func pruneLog(ctx context.Context, path string, o audit.PruneOptions, caller string, log *audit.Log) (audit.PruneResult, error) {
	res, err := audit.PruneFile(path, o)
	if err != nil || o.DryRun || res.Record.Count == 0 {
		return res, err
	}
	if log != nil {
		return res, log.RecordPrune(ctx, caller, res.Record)
	}
	sink, err := audit.OpenFile(path)
	if err != nil {
		return res, err
	}
	var opts []audit.Option
	if o.Signer != nil {
		recs, err := audit.Records(audit.ReadFiles(path))
		if err != nil {
			return res, err
		}
		last := recs[len(recs)-1]
		opts = append(opts, audit.WithSigner(o.Signer),
			audit.WithJoin(last.Kind == audit.KindCheckpoint && last.Checkpoint != nil && last.Checkpoint.Closed))
	}
	l := audit.New(sink, opts...)
	rerr := l.RecordPrune(ctx, caller, res.Record)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return res, errors.Join(rerr, l.Close(cctx))
}

func newAuditPruneCmd(e *env) *cobra.Command {
	var (
		file, before, archive, keyFile string
		pubs                           []string
		dryRun                         bool
	)
	cmd := &cobra.Command{
		Use:   "prune --before DATE [--archive DIR] [--dry-run] [--key KEY.pem] [--pub KEY.pub.pem]... [--file F]",
		Short: "Remove (or archive) whole rotated segments of the audit log older than DATE, leaving a signed anchor",
		Long: `prune removes the oldest rotated segments of the file log (FILE.<seq>) whose
records are all older than --before, or moves them to --archive. The newest
segment and the file itself are never pruned. The whole log is verified
first (with the key of --key and the keys of --pub); a log that does not
verify is not pruned (exit 1). For each segment it appends to FILE.pruned an
anchor signed with --key: the head of the chain where the segment ended and
what verification needs to go on from there, so audit verify checks what
remains from its first record, and an edit of it, or a forged anchor, still
fails. The prune is then recorded on the chain (a prune record, caller
local:USER). Safe while serve writes to the log. --dry-run prints what would
go. A signed log needs --key (the log's --audit-key). Exit 0 pruned or
nothing to prune, 1 refused, 2 usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if before == "" {
				return usageErrorf("--before is required")
			}
			t, err := parseDate(before)
			if err != nil {
				return usageErrorf("--before: %v", err)
			}
			keys, err := readAuditPublicKeys(pubs)
			if err != nil {
				return err
			}
			o := audit.PruneOptions{Before: t, Archive: archive, DryRun: dryRun, Keys: keys}
			if keyFile != "" {
				if o.Signer, err = audit.LoadSigner(keyFile); err != nil {
					return usageErrorf("--key: %v", err)
				}
			}
			res, err := pruneLog(cmd.Context(), file, o, localCaller(), nil)
			if errors.Is(err, audit.ErrPruneRefused) {
				return failedf("%v", err)
			}
			if err != nil {
				return err
			}
			verb := "pruned"
			if archive != "" {
				verb = "archived to " + archive
			}
			if dryRun {
				verb = "would prune"
			}
			for _, s := range res.Segments {
				fmt.Fprintf(e.stdout, "%s %s: %d records, the last at %s\n", verb, s.Path, s.Records, s.LastTime.Format(time.RFC3339))
			}
			if len(res.Segments) == 0 {
				fmt.Fprintf(e.stdout, "nothing to prune: no rotated segment ends before %s\n", t.Format(time.RFC3339))
				return nil
			}
			fmt.Fprintf(e.stdout, "records 1..%d gone; the log now starts at seq %d (anchor in %s)\n", res.Record.Count, res.Record.Count+1, audit.PruneAnchorsFile(file))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", defaultAuditFile, "the audit log file (its rotated files beside it)")
	cmd.Flags().StringVar(&before, "before", "", "prune segments whose records are all older than this date (2020-01-31) or RFC 3339 time")
	cmd.Flags().StringVar(&archive, "archive", "", "move the segments to this directory instead of deleting them")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be pruned, change nothing")
	cmd.Flags().StringVar(&keyFile, "key", "", "Ed25519 private key of the log (serve --audit-key): signs the anchors and the prune record")
	cmd.Flags().StringArrayVar(&pubs, "pub", nil, "further public keys the log was signed by (rotated keys), for the verification before the prune")
	return cmd
}

// retentionInterval is how often serve looks for segments past retention.
const retentionInterval = 24 * time.Hour

// retentionJob prunes serve's file log on schedule.
type retentionJob struct {
	path    string
	keep    retention
	archive string
	signer  *audit.Signer
	log     *audit.Log
	logger  *slog.Logger
	now     func() time.Time
}

// runOnce prunes what is past retention now.
func (j *retentionJob) runOnce(ctx context.Context) (audit.PruneResult, error) {
	cut := j.keep.cutoff(j.now())
	res, err := pruneLog(ctx, j.path, audit.PruneOptions{Before: cut, Archive: j.archive, Signer: j.signer, Now: j.now}, "retention", j.log)
	switch {
	case err != nil:
		j.logger.Error("audit retention: prune failed; the log is kept whole", slog.String("error", err.Error()))
	case len(res.Segments) > 0:
		j.logger.Info("audit retention: pruned", slog.Int("segments", len(res.Segments)), slog.Uint64("records", res.Record.Count),
			slog.Time("before", cut), slog.String("archive", j.archive))
	}
	return res, err
}

// run prunes once, then at every tick until ctx ends.
func (j *retentionJob) run(ctx context.Context, ticks <-chan time.Time) {
	_, _ = j.runOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			_, _ = j.runOnce(ctx)
		}
	}
}

// startRetention starts pruning serve's file log per --audit-retention,
// and says at start what is kept. It returns a stop function.
func (f *auditFlags) startRetention(ctx context.Context, logs auditLogs, logger *slog.Logger, fileLog bool) (func(), error) {
	keep, err := parseRetention(f.retention)
	if err != nil {
		return nil, usageErrorf("--audit-retention: %v", err)
	}
	if keep.keepsAll() {
		logger.Info("audit retention: every record is kept (no --audit-retention; HIPAA asks for six years: --audit-retention 6y)")
		return func() {}, nil
	}
	if !fileLog {
		return nil, usageErrorf("--audit-retention prunes the --audit-file log; Redis streams are not pruned")
	}
	j := &retentionJob{path: f.file, keep: keep, archive: f.archive, log: logs[0], logger: logger, now: time.Now}
	if f.keyFile != "" {
		if j.signer, err = audit.LoadSigner(f.keyFile); err != nil {
			return nil, usageErrorf("--audit-key: %v", err)
		}
	}
	logger.Info("audit retention", slog.String("keep", keep.text), slog.String("archive", f.archive), slog.Duration("every", retentionInterval))
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := time.NewTicker(retentionInterval)
	done := make(chan struct{})
	go func() { defer close(done); j.run(ctx, t.C) }()
	return func() { t.Stop(); cancel(); <-done }, nil
}

// pruneAnchors reads the prune anchors of serve's file log (none when the
// log is a Redis stream).
func (f *auditFlags) pruneAnchors(fileGiven bool) ([]audit.PruneAnchor, error) {
	if f.redisURL != "" && !fileGiven {
		return nil, nil
	}
	return audit.ReadPruneAnchors(f.file)
}
