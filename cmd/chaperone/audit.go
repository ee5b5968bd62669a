package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/server"
)

// defaultAuditFile is where serve writes decisions and the audit commands
// read them unless told otherwise.
const defaultAuditFile = "chaperone-audit.jsonl"

// auditFlags are serve's flags for the decision log.
type auditFlags struct {
	file               string
	maxFileSize        int64
	redisURL           string
	stream             string
	keyFile            string
	failClosed         bool
	queue              int
	enqueueTimeout     time.Duration
	checkpointEvery    int
	checkpointInterval time.Duration
	syncDelay          time.Duration
	instance           string
	anchor             string
	ack                string
	fieldKeyFile       string // --audit-encryption-key-file
	retention          string // --audit-retention
	archive            string // --audit-archive
}

// addAuditFlags registers serve's --audit-* flags.
func addAuditFlags(fs *pflag.FlagSet) *auditFlags {
	f := &auditFlags{}
	fs.StringVar(&f.file, "audit-file", defaultAuditFile, "append the hash-chained decision log to this JSON-lines file (rotated files beside it)")
	fs.Int64Var(&f.maxFileSize, "audit-max-file-size", audit.DefaultMaxFileSize, "rotate the audit file at this size (bytes)")
	fs.StringVar(&f.redisURL, "audit-redis", "", "write the decision log to a Redis stream (redis://, rediss://, redis+sentinel://, redis+cluster:// URL): instead of the file, or beside it when --audit-file is given too; --redis does not imply it")
	fs.StringVar(&f.stream, "audit-stream", "", "Redis stream of this instance (default "+audit.DefaultStreamPrefix+"HOSTNAME)")
	fs.StringVar(&f.keyFile, "audit-key", "", "Ed25519 private key (PKCS #8 PEM, from audit keygen) signing the genesis, restarts and checkpoints; without it the log is only hash-chained (audit verify --pub refuses it)")
	fs.BoolVar(&f.failClosed, "audit-fail-closed", true, "when the audit queue stays full (sink failing), answer DENY AUDIT_UNAVAILABLE; false answers and counts the record as dropped")
	fs.IntVar(&f.queue, "audit-queue", audit.DefaultQueueSize, "decisions that may wait for the audit sink")
	fs.DurationVar(&f.enqueueTimeout, "audit-enqueue-timeout", audit.DefaultEnqueueTimeout, "how long a decision waits for room in a full audit queue")
	fs.DurationVar(&f.syncDelay, "audit-sync-delay", audit.DefaultSyncDelay, "group commit with --audit-ack queued: after a write, let records gather this long before the next write and fsync (delays durability, not answers; 0 writes at once)")
	fs.IntVar(&f.checkpointEvery, "audit-checkpoint-every", audit.DefaultCheckpointEvery, "sign a checkpoint after this many records")
	fs.DurationVar(&f.checkpointInterval, "audit-checkpoint-interval", audit.DefaultCheckpointInterval, "sign a checkpoint at least this often while records arrive")
	fs.StringVar(&f.instance, "audit-instance", "", "instance id the signed genesis binds the log to (default the host name)")
	fs.StringVar(&f.anchor, "audit-anchor", "", "also write every checkpoint's head here (a FILE, or redis://…[?key=K], default key "+audit.DefaultAnchorPrefix+"INSTANCE), so audit verify --anchor catches a cut log; needs --audit-key")
	fs.StringVar(&f.ack, "audit-ack", "queued", "when a decision is answered: queued (its record is queued; a crash loses up to the group-commit delay) or durable (its record is fsynced, or acknowledged by Redis)")
	fs.StringVar(&f.fieldKeyFile, "audit-encryption-key-file", "", auditFieldKeysHelp+" (off by default: identifiers are written in clear)")
	fs.StringVar(&f.retention, "audit-retention", "", "prune rotated segments of the --audit-file log older than this (6y, 90d, 2160h), daily, behind signed anchors (see audit prune); default: keep everything")
	fs.StringVar(&f.archive, "audit-archive", "", "with --audit-retention: move pruned segments to this directory instead of deleting them")
	return f
}

// open starts the decision log. Close it after the HTTP server has shut
// down: Close drains the queue.
func (f *auditFlags) open(ctx context.Context, logger *slog.Logger) (*audit.Log, error) {
	opts := []audit.Option{
		audit.WithLogger(logger),
		audit.WithFailClosed(f.failClosed),
		audit.WithQueueSize(f.queue),
		audit.WithEnqueueTimeout(f.enqueueTimeout),
		audit.WithCheckpoints(f.checkpointEvery, f.checkpointInterval),
		audit.WithSyncDelay(f.syncDelay),
	}
	if f.checkpointEvery < 1 || f.checkpointInterval <= 0 {
		return nil, usageErrorf("--audit-checkpoint-every must be at least 1 and --audit-checkpoint-interval positive")
	}
	switch f.ack {
	case "queued":
	case "durable":
		opts = append(opts, audit.WithDurable(true))
	default:
		return nil, usageErrorf("--audit-ack %q: want queued or durable", f.ack)
	}
	if f.instance == "" {
		f.instance = hostName()
	}
	opts = append(opts, audit.WithInstance(f.instance))
	fk, err := loadFieldKeys(f.fieldKeyFile)
	if err != nil {
		return nil, err
	}
	if fk != nil {
		opts = append(opts, audit.WithFieldKeys(fk))
	}
	if f.keyFile != "" {
		s, err := audit.LoadSigner(f.keyFile)
		if err != nil {
			return nil, usageErrorf("--audit-key: %v", err)
		}
		opts = append(opts, audit.WithSigner(s))
	} else {
		logger.Warn("audit: no --audit-key; the decision log is hash-chained but has no signed genesis or checkpoints")
	}
	var closeAnchor func()
	if f.anchor != "" {
		if f.keyFile == "" {
			return nil, usageErrorf("--audit-anchor anchors signed checkpoints: give --audit-key")
		}
		a, closeFn, err := openAuditAnchor(f.anchor, f.instance)
		if err != nil {
			return nil, err
		}
		opts, closeAnchor = append(opts, audit.WithAnchor(a)), closeFn
	}
	sink, where, err := f.sink(ctx, logger)
	if err != nil {
		if closeAnchor != nil {
			closeAnchor()
		}
		return nil, err
	}
	if closeAnchor != nil {
		sink = &closingSink{Sink: sink, close: closeAnchor}
	}
	logger.Info("audit log", slog.String("sink", where), slog.Bool("fail_closed", f.failClosed),
		slog.String("ack", f.ack), slog.String("instance", f.instance), slog.String("anchor", redactURL(f.anchor)),
		slog.Bool("identifiers_encrypted", fk != nil))
	return audit.New(sink, opts...), nil
}

// closingSink also closes what the log's anchor holds.
type closingSink struct {
	audit.Sink
	close func()
}

func (s *closingSink) Close() error { err := s.Sink.Close(); s.close(); return err }

func hostName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "default"
	}
	return host
}

// openAuditAnchor opens --audit-anchor / --anchor: a file path, or a Redis
// URL whose optional "key" query parameter names the key (default
// audit.DefaultAnchorPrefix + instance).
func openAuditAnchor(raw, instance string) (audit.Anchor, func(), error) {
	if !strings.HasPrefix(raw, "redis") {
		return audit.NewFileAnchor(raw), func() {}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, usageErrorf("anchor: %v", err)
	}
	q := u.Query()
	key := q.Get("key")
	q.Del("key")
	u.RawQuery = q.Encode()
	if key == "" {
		if instance == "" {
			return nil, nil, usageErrorf("anchor %s: name the key (?key=…) or the instance (--instance)", u.Redacted())
		}
		key = audit.DefaultAnchorPrefix + instance
	}
	rdb, err := newRedisClient(u.String(), 5*time.Second)
	if err != nil {
		return nil, nil, usageErrorf("anchor: %v", err)
	}
	return audit.NewRedisAnchor(rdb, key), func() { rdb.Close() }, nil
}

// readAuditAnchor reads the last anchored head for verify, checking its
// signature when keys are given.
func readAuditAnchor(ctx context.Context, raw, instance string, keys []ed25519.PublicKey) (audit.AnchorHead, error) {
	a, closeFn, err := openAuditAnchor(raw, instance)
	if err != nil {
		return audit.AnchorHead{}, err
	}
	defer closeFn()
	h, ok, err := a.Last(ctx)
	if err != nil {
		return h, usageErrorf("--anchor: %v", err)
	}
	if !ok {
		return h, usageErrorf("--anchor %s: no anchored head", redactURL(raw))
	}
	if len(keys) > 0 {
		if err := h.Verify(keys...); err != nil {
			return h, failedf("--anchor: %v", err)
		}
	}
	return h, nil
}

func (f *auditFlags) sink(ctx context.Context, logger *slog.Logger) (audit.Sink, string, error) {
	if f.redisURL == "" {
		s, err := audit.OpenFile(f.file, audit.WithMaxFileSize(f.maxFileSize), audit.WithFileLogger(logger))
		if err != nil {
			return nil, "", err
		}
		return s, f.file, nil
	}
	rdb, err := newRedisClient(f.redisURL, 5*time.Second)
	if err != nil {
		return nil, "", usageErrorf("--audit-redis: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, "", fmt.Errorf("audit redis: %w", err)
	}
	stream := f.stream
	if stream == "" {
		stream = defaultAuditStream()
	}
	return &ownedRedisSink{RedisSink: audit.NewRedisSink(rdb, stream), rdb: rdb}, "redis stream " + stream, nil
}

func defaultAuditStream() string { return audit.DefaultStreamPrefix + hostName() }

// ownedRedisSink closes its client with the sink.
type ownedRedisSink struct {
	*audit.RedisSink
	rdb redis.UniversalClient
}

func (s *ownedRedisSink) Close() error { return errors.Join(s.RedisSink.Close(), s.rdb.Close()) }

// auditSource is where the audit commands read the log.
type auditSource struct {
	file   string
	redis  string
	stream string
	keys   string // --audit-encryption-key-file
}

func (s *auditSource) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.keys, "audit-encryption-key-file", "", auditFieldKeysHelp)
	fs.StringVar(&s.file, "file", defaultAuditFile, "the audit log file (its rotated files are read too)")
	fs.StringVar(&s.redis, "redis", "", "read the audit streams in Redis instead (URL as for serve --audit-redis)")
	fs.StringVar(&s.stream, "stream", "", "only this Redis stream (default: every stream named "+audit.DefaultStreamPrefix+"*)")
}

// chain is one audit chain: a file log or one Redis stream.
type chain struct {
	name    string
	entries iter.Seq2[audit.Entry, error]
}

// chains opens the source; close releases it.
func (s *auditSource) chains(ctx context.Context) (chains []chain, rdb redis.UniversalClient, closeFn func(), err error) {
	if s.redis == "" {
		if _, err := os.Stat(s.file); err != nil {
			return nil, nil, nil, usageErrorf("audit log: %v", err)
		}
		return []chain{{s.file, audit.ReadFiles(s.file)}}, nil, func() {}, nil
	}
	rdb, err = newRedisClient(s.redis, 5*time.Second)
	if err != nil {
		return nil, nil, nil, usageErrorf("--redis: %v", err)
	}
	streams := []string{s.stream}
	if s.stream == "" {
		if streams, err = audit.Streams(ctx, rdb, audit.DefaultStreamPrefix); err != nil {
			rdb.Close()
			return nil, nil, nil, err
		}
	}
	for _, st := range streams {
		chains = append(chains, chain{st, audit.ReadStream(ctx, rdb, st)})
	}
	return chains, rdb, func() { rdb.Close() }, nil
}

// records reads every record of the source, its identifying fields opened.
func (s *auditSource) records(ctx context.Context) ([]audit.Record, error) {
	return s.recordsAbout(ctx, "")
}

// recordsAbout reads the records of the source that may be about patient
// (every record when patient is ""), found through the blind index when
// the records are sealed, and opens their identifying fields.
func (s *auditSource) recordsAbout(ctx context.Context, patient string) ([]audit.Record, error) {
	fk, err := loadFieldKeys(s.keys)
	if err != nil {
		return nil, err
	}
	recs, err := s.readRecords(ctx)
	if err != nil {
		return nil, err
	}
	if fk != nil && patient != "" {
		recs = fk.MatchPatient(recs, patient)
	}
	if err := audit.OpenRecords(recs, fk); err != nil {
		return nil, usageErrorf("%v", err)
	}
	return recs, nil
}

func (s *auditSource) readRecords(ctx context.Context) ([]audit.Record, error) {
	chains, _, closeFn, err := s.chains(ctx)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	var out []audit.Record
	for _, c := range chains {
		rs, err := audit.Records(c.entries)
		if err != nil {
			return nil, fmt.Errorf("%w (run chaperone audit verify)", err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

func newAuditCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and read the tamper-evident decision log",
		Long: `audit reads the decision log serve writes (--audit-file, or the Redis
streams of --audit-redis): verify its hash chain and signed checkpoints,
account for disclosures, review break-glass access, look for anomalies and
prepare access recertification.

Times (--since, --until) are RFC 3339 ("2026-11-01T00:00:00Z"), a date
("2026-11-01", UTC) or a duration back from now ("24h", "7d").`,
	}
	cmd.AddCommand(
		newKeygenCmd(e, "Write an Ed25519 key pair for checkpoints: NAME.pem (private, PKCS #8) and NAME.pub.pem (PKIX)"),
		newAuditVerifyCmd(e),
		newAuditDisclosuresCmd(e),
		newAuditBreakGlassCmd(e),
		newAuditReviewCmd(e),
		newAuditAnomaliesCmd(e),
		newAuditRecertifyCmd(e),
		newAuditChangesCmd(e),
		newAuditExportRequestsCmd(e),
		newAuditPruneCmd(e),
	)
	return cmd
}

func newAuditVerifyCmd(e *env) *cobra.Command {
	var (
		src       auditSource
		pubs      []string
		openTail  bool
		instance  string
		anchorURL string
	)
	cmd := &cobra.Command{
		Use:   "verify [FILE] [--redis URL [--stream S]] [--pub KEY.pem]... [--anchor FILE|redis://…] [--allow-open-tail] [--instance ID]",
		Short: "Check the hash chain, the signed genesis and checkpoints; exit 1 naming the first bad record",
		Long: `verify walks the decision log from its first record: every record must
match its own hash, link to the record before and carry the next sequence
number, and every checkpoint must sign the head before it.

With --pub (a log written with serve --audit-key) it also requires:
  - a genesis record, signed by one of the keys, as the first record (it
    names the instance, the key and the checkpoint cadence);
  - every checkpoint and restart record signed by one of the keys;
  - the cadence of the genesis (or the latest restart): no more than
    --audit-checkpoint-every records between signed records, and no record
    --audit-checkpoint-interval after the last signed one unless it is the
    first since;
  - nothing but a restart after a clean-shutdown checkpoint;
  - a log closed cleanly: the last record is the clean-shutdown checkpoint.
    A log that was not (a running server's, or one whose server crashed) is
    reported with its unanchored tail and fails unless --allow-open-tail.
Without --pub a chain rewritten with recomputed hashes cannot be told from
the original.

--anchor reads the last head serve wrote to --audit-anchor (a file, or a
Redis URL); the log must reach it: the record at the anchored sequence
number must exist and hash to the anchored hash, so a log cut after the
fact (even at a checkpoint, even with --allow-open-tail) fails.
--instance requires the genesis to name this instance id.

Exit 0 when intact, 1 on tampering, an open tail or a missed anchor (the
first bad record is named), 2 when the log cannot be read.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if src.redis != "" {
					return usageErrorf("give FILE or --redis, not both")
				}
				src.file = args[0]
			}
			keys, err := readAuditPublicKeys(pubs)
			if err != nil {
				return err
			}
			chains, _, closeFn, err := src.chains(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			if len(chains) == 0 {
				return usageErrorf("no audit streams in Redis")
			}
			opts := audit.VerifyOptions{Keys: keys, AllowOpenTail: openTail, Instance: instance}
			if src.redis == "" {
				if opts.Pruned, err = audit.ReadPruneAnchors(src.file); err != nil {
					return usageErrorf("%v", err)
				}
			}
			if anchorURL != "" {
				if len(chains) != 1 {
					return usageErrorf("--anchor: name one chain (--stream)")
				}
				a, err := readAuditAnchor(cmd.Context(), anchorURL, instance, keys)
				if err != nil {
					return err
				}
				opts.Anchor = &audit.Head{Seq: a.Seq, Hash: a.Hash}
			}
			for _, c := range chains {
				s, err := audit.VerifyWith(c.entries, opts)
				var te *audit.TamperError
				if errors.As(err, &te) {
					if errors.Is(err, audit.ErrOpenTail) {
						return failedf("%s: NOT CLOSED CLEANLY: %v", c.name, te)
					}
					return failedf("%s: TAMPERED: %v", c.name, te)
				}
				if err != nil {
					return usageErrorf("%s: %v", c.name, err)
				}
				fmt.Fprintf(e.stdout, "%s: intact: %d records (%d decisions, %d reviews), head seq %d %s\n",
					c.name, s.Records, s.Decisions, s.Reviews, s.Head.Seq, s.Head.Hash)
				switch {
				case len(keys) == 0:
					fmt.Fprintf(e.stdout, "  %d checkpoints, signatures NOT verified (no --pub)\n", s.Checkpoints)
				default:
					fmt.Fprintf(e.stdout, "  genesis: instance %q, key id %s, a checkpoint every %d records or %s; %d restarts\n",
						s.Genesis.Instance, s.Genesis.KeyID, s.Genesis.CheckpointEvery,
						time.Duration(s.Genesis.CheckpointIntervalMs)*time.Millisecond, s.Restarts)
					fmt.Fprintf(e.stdout, "  %d checkpoints, %d signatures verified; %d records after the last signed checkpoint\n",
						s.Checkpoints, s.Signed, s.UnsignedTail)
					if s.Closed {
						fmt.Fprintf(e.stdout, "  closed cleanly\n")
					} else {
						fmt.Fprintf(e.stdout, "  OPEN: not closed cleanly; %d records in the unanchored tail (accepted: --allow-open-tail)\n", s.UnsignedTail)
					}
				}
				if p := s.Pruned; p != nil {
					fmt.Fprintf(e.stdout, "  pruned: records 1..%d removed (older than %s) on %s; verified from the anchor (key id %s)\n",
						p.Count, p.Before.Format(time.DateOnly), p.Time.Format(time.RFC3339), dash(p.KeyID))
				}
				if s.TornTail != "" {
					fmt.Fprintf(e.stdout, "  torn last line at %s (a write cut by a crash; not counted)\n", s.TornTail)
				}
				if opts.Anchor != nil {
					fmt.Fprintf(e.stdout, "  reaches the anchored head seq %d\n", opts.Anchor.Seq)
				}
				if s.Drops > 0 {
					fmt.Fprintf(e.stdout, "  WARNING: %d decisions were answered without a record (fail-open drops)\n", s.Drops)
				}
			}
			return nil
		},
	}
	src.register(cmd.Flags())
	cmd.Flags().StringArrayVar(&pubs, "pub", nil, "Ed25519 public key (PKIX PEM) that signs the genesis and checkpoints; repeat for rotated keys")
	cmd.Flags().BoolVar(&openTail, "allow-open-tail", false, "accept a log that was not closed cleanly (a running or crashed server's); its unanchored tail is reported")
	cmd.Flags().StringVar(&instance, "instance", "", "require the genesis to name this instance id")
	cmd.Flags().StringVar(&anchorURL, "anchor", "", "the anchor serve --audit-anchor wrote (FILE or redis://…): the log must reach its head")
	return cmd
}

func readAuditPublicKeys(files []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, f := range files {
		k, err := audit.LoadPublicKey(f)
		if err != nil {
			return nil, usageErrorf("--pub: %v", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// windowFlags are --since and --until.
type windowFlags struct{ since, until string }

func (w *windowFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&w.since, "since", "", "from this time (RFC 3339, date, or a duration back from now such as 24h or 30d)")
	fs.StringVar(&w.until, "until", "", "up to this time (same forms)")
}

func (w *windowFlags) window(now time.Time) (audit.Window, error) {
	var out audit.Window
	var err error
	if out.Since, err = parseAuditTime(w.since, now); err != nil {
		return out, usageErrorf("--since: %v", err)
	}
	if out.Until, err = parseAuditTime(w.until, now); err != nil {
		return out, usageErrorf("--until: %v", err)
	}
	return out, nil
}

// parseAuditTime reads RFC 3339, a date (UTC) or a duration before now
// ("36h", "7d").
func parseAuditTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, YYYY-MM-DD or a duration such as 24h or 7d", s)
}

// format is --format table|json.
type format string

func (f *format) register(fs *pflag.FlagSet) {
	*f = "table"
	fs.StringVar((*string)(f), "format", "table", "table or json")
}

func (f format) check() error {
	if f != "table" && f != "json" {
		return usageErrorf("--format %q: want table or json", string(f))
	}
	return nil
}

// print writes v as JSON, or rows as a table.
func (f format) print(w io.Writer, v any, header string, rows func(func(...any))) error {
	if f == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(func(cols ...any) {
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			switch c := c.(type) {
			case time.Time:
				fmt.Fprint(tw, c.UTC().Format(time.RFC3339))
			case []string:
				fmt.Fprint(tw, dash(strings.Join(c, ",")))
			case string:
				fmt.Fprint(tw, dash(c))
			default:
				fmt.Fprint(tw, c)
			}
		}
		fmt.Fprintln(tw)
	})
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAuditDisclosuresCmd(e *env) *cobra.Command {
	var (
		src        auditSource
		win        windowFlags
		out        format
		patient    string
		includeTPO bool
	)
	cmd := &cobra.Command{
		Use:   "disclosures --patient Patient/52 [--since T] [--until T] [--format table|json] [--include-tpo]",
		Short: "Accounting of disclosures for one patient: who received which resources, when, for what purpose",
		Long: `disclosures lists every allowed access to resources in the patient's
compartment: the recipient (subject, organization, client app), the
resource, the time and the purpose of use. Disclosures for treatment,
payment and health-care operations (TREAT, HPAYMT, HOPERAT), which HIPAA
exempts from the accounting, are left out unless --include-tpo.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if patient == "" {
				return usageErrorf("--patient is required")
			}
			if err := out.check(); err != nil {
				return err
			}
			w, err := win.window(time.Now())
			if err != nil {
				return err
			}
			recs, err := src.recordsAbout(cmd.Context(), patient)
			if err != nil {
				return err
			}
			ds := audit.Disclosures(recs, patient, w, includeTPO)
			if ds == nil {
				ds = []audit.Disclosure{}
			}
			return out.print(e.stdout, ds, "TIME\tRECIPIENT\tORGANIZATION\tCLIENT\tACTION\tRESOURCE\tPURPOSE\tDECISION", func(row func(...any)) {
				for _, d := range ds {
					row(d.Time, d.Recipient, d.Organization, d.ClientID, d.Action, d.ResourceType+"/"+d.ResourceID, d.PurposeOfUse, d.DecisionID)
				}
			})
		},
	}
	src.register(cmd.Flags())
	win.register(cmd.Flags())
	out.register(cmd.Flags())
	cmd.Flags().StringVar(&patient, "patient", "", "the patient, as a FHIR reference (Patient/52)")
	cmd.Flags().BoolVar(&includeTPO, "include-tpo", false, "include treatment, payment and operations disclosures")
	return cmd
}

func newAuditBreakGlassCmd(e *env) *cobra.Command {
	var (
		src        auditSource
		win        windowFlags
		out        format
		unreviewed bool
	)
	cmd := &cobra.Command{
		Use:   "break-glass [--since T] [--unreviewed] [--format table|json]",
		Short: "Every break-glass access with its reason and reviews",
		Long: `break-glass lists emergency accesses (a break-glass reason was given, a
policy tagged the decision BREAK_GLASS, or the purpose was ETREAT), with
the reviews recorded by "chaperone audit review".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			w, err := win.window(time.Now())
			if err != nil {
				return err
			}
			recs, err := src.records(cmd.Context())
			if err != nil {
				return err
			}
			as := audit.BreakGlass(recs, w, unreviewed)
			if as == nil {
				as = []audit.BreakGlassAccess{}
			}
			return out.print(e.stdout, as, "TIME\tDECISION ID\tSUBJECT\tPATIENT\tRESOURCE\tDECISION\tREASON\tREVIEWED", func(row func(...any)) {
				for _, a := range as {
					rv := "no"
					if n := len(a.Reviews); n > 0 {
						rv = "by " + a.Reviews[n-1].By
					}
					row(a.Time, a.DecisionID, a.Subject, a.Patient, a.ResourceType+"/"+a.ResourceID, a.Decision, a.Reason, rv)
				}
			})
		},
	}
	src.register(cmd.Flags())
	win.register(cmd.Flags())
	out.register(cmd.Flags())
	cmd.Flags().BoolVar(&unreviewed, "unreviewed", false, "only accesses without a review")
	return cmd
}

func newAuditReviewCmd(e *env) *cobra.Command {
	var (
		src     auditSource
		by      string
		note    string
		keyFile string
	)
	cmd := &cobra.Command{
		Use:   "review DECISION_ID --by NAME --note TEXT [--key KEY.pem]",
		Short: "Record a review of a decision (usually break-glass) in the chain",
		Long: `review appends a review record to the chain the decision is in (the file
log, or the Redis stream holding the decision). It is safe while serve is
writing to the same log. With --key a signed checkpoint follows the review.
The record's caller is the operating-system user who ran the command
("local:NAME"); --by is the reviewer's name as they give it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if by == "" || note == "" {
				return usageErrorf("--by and --note are required")
			}
			var opts []audit.Option
			if keyFile != "" {
				s, err := audit.LoadSigner(keyFile)
				if err != nil {
					return usageErrorf("--key: %v", err)
				}
				opts = append(opts, audit.WithSigner(s))
			}
			ctx := cmd.Context()
			chains, rdb, closeFn, err := src.chains(ctx)
			if err != nil {
				return err
			}
			defer closeFn()
			var sink audit.Sink
			for _, c := range chains {
				recs, err := audit.Records(c.entries)
				if err != nil {
					return err
				}
				if _, ok := audit.FindDecision(recs, id); !ok {
					continue
				}
				if recs[0].Kind == audit.KindGenesis && keyFile == "" {
					return usageErrorf("the log is signed: give --key, or the review breaks its checkpoint cadence")
				}
				// A guest on the server's chain: it keeps the chain's
				// cadence and its clean-shutdown state.
				last := recs[len(recs)-1]
				opts = append(opts, audit.WithJoin(last.Kind == audit.KindCheckpoint && last.Checkpoint != nil && last.Checkpoint.Closed))
				if rdb != nil {
					sink = audit.NewRedisSink(rdb, c.name)
				} else if sink, err = audit.OpenFile(src.file); err != nil {
					return err
				}
				break
			}
			if sink == nil {
				return usageErrorf("no decision %q in the audit log", id)
			}
			l := audit.New(sink, opts...)
			rerr := l.Review(ctx, localCaller(), audit.Review{DecisionID: id, By: by, Note: note})
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := errors.Join(rerr, l.Close(cctx)); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "recorded review of %s by %s\n", id, by)
			return nil
		},
	}
	src.register(cmd.Flags())
	cmd.Flags().StringVar(&by, "by", "", "who reviewed")
	cmd.Flags().StringVar(&note, "note", "", "the finding")
	cmd.Flags().StringVar(&keyFile, "key", "", "Ed25519 private key to sign a checkpoint after the review")
	return cmd
}

func newAuditAnomaliesCmd(e *env) *cobra.Command {
	var (
		src        auditSource
		win        windowFlags
		out        format
		th         audit.Thresholds
		afterHours string
		tz         string
	)
	cmd := &cobra.Command{
		Use:   "anomalies [--since T] [thresholds] [--format table|json]",
		Short: "Simple, explainable signals: many patients, sequential ids, after-hours bursts, repeated denials",
		Long: `anomalies looks at each subject's decisions for:
  distinct-patients  more than --distinct-patients patients within --window
  sequential-ids     --sequential-ids consecutive numeric patient or resource ids in a row
  after-hours        --after-hours-burst decisions within --window in --after-hours (local to --timezone)
  repeated-denials   --denials denied decisions within --window
A threshold of 0 turns its signal off. Each subject gets at most one line per
signal: its worst window.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			start, end, ok := strings.Cut(afterHours, "-")
			var err1, err2 error
			th.AfterHoursStart, err1 = strconv.Atoi(start)
			th.AfterHoursEnd, err2 = strconv.Atoi(end)
			if !ok || err1 != nil || err2 != nil || th.AfterHoursStart < 0 || th.AfterHoursStart > 23 || th.AfterHoursEnd < 0 || th.AfterHoursEnd > 23 {
				return usageErrorf("--after-hours %q: want START-END hours, e.g. 20-7", afterHours)
			}
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return usageErrorf("--timezone: %v", err)
			}
			th.Location = loc
			w, err := win.window(time.Now())
			if err != nil {
				return err
			}
			recs, err := src.records(cmd.Context())
			if err != nil {
				return err
			}
			as := audit.Anomalies(recs, w, th)
			if as == nil {
				as = []audit.Anomaly{}
			}
			return out.print(e.stdout, as, "SIGNAL\tSUBJECT\tFROM\tTO\tCOUNT\tDETAIL", func(row func(...any)) {
				for _, a := range as {
					row(a.Signal, a.Subject, a.From, a.To, a.Count, a.Detail)
				}
			})
		},
	}
	src.register(cmd.Flags())
	win.register(cmd.Flags())
	out.register(cmd.Flags())
	fs := cmd.Flags()
	fs.DurationVar(&th.Window, "window", time.Hour, "sliding window of the counting signals")
	fs.IntVar(&th.DistinctPatients, "distinct-patients", 50, "flag more distinct patients than this within the window")
	fs.IntVar(&th.SequentialIDs, "sequential-ids", 10, "flag this many consecutive numeric ids in a row")
	fs.StringVar(&afterHours, "after-hours", "20-7", "after-hours range START-END (hours)")
	fs.IntVar(&th.AfterHoursBurst, "after-hours-burst", 20, "flag this many after-hours decisions within the window")
	fs.StringVar(&tz, "timezone", "UTC", "time zone of working hours (IANA name)")
	fs.IntVar(&th.Denials, "denials", 10, "flag this many denied decisions within the window")
	return cmd
}

func newAuditRecertifyCmd(e *env) *cobra.Command {
	var (
		src auditSource
		win windowFlags
		out format
		org string
	)
	cmd := &cobra.Command{
		Use:   "recertify --organization O [--since T] [--format table|json]",
		Short: "For periodic access reviews: who of an organization accessed what, under which role",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org == "" {
				return usageErrorf("--organization is required")
			}
			if err := out.check(); err != nil {
				return err
			}
			w, err := win.window(time.Now())
			if err != nil {
				return err
			}
			recs, err := src.records(cmd.Context())
			if err != nil {
				return err
			}
			rs := audit.Recertify(recs, org, w)
			return out.print(e.stdout, rs, "ROLE\tSUBJECT\tALLOWED\tDENIED\tBREAK-GLASS\tPATIENTS\tRESOURCE TYPES\tFIRST\tLAST", func(row func(...any)) {
				for _, r := range rs {
					for _, s := range r.Subjects {
						row(r.Role, s.Subject, s.Allowed, s.Denied, s.BreakGlass, s.Patients, countList(s.ResourceTypes), s.First, s.Last)
					}
				}
			})
		},
	}
	src.register(cmd.Flags())
	win.register(cmd.Flags())
	out.register(cmd.Flags())
	cmd.Flags().StringVar(&org, "organization", "", "the organization, as a FHIR reference (Organization/o1)")
	return cmd
}

// localCaller names the operating-system user running a command that
// writes to the audit log directly, as the record's caller.
func localCaller() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "local:" + u.Username
	}
	if n := os.Getenv("USER"); n != "" {
		return "local:" + n
	}
	return "local:uid-" + strconv.Itoa(os.Getuid())
}

func newAuditChangesCmd(e *env) *cobra.Command {
	var (
		src     auditSource
		win     windowFlags
		out     format
		patient string
	)
	cmd := &cobra.Command{
		Use:   "changes [--patient P] [--since T] [--until T] [--format table|json]",
		Short: "The administrative history: who put or revoked consents, grants and agreements, activated bundles, reviewed break-glass",
		Long: `changes lists every administrative change on the audit chain, oldest
first: consents put and revoked, break-glass grants given and revoked,
vendor agreements put and revoked, policy bundles activated, and reviews of
decisions. Each row names the authenticated caller who made it (the token
subject or mutual TLS identity; anonymous-loopback when serve ran without
caller authentication; bundle-loader for activations, whose signers are
shown) and the outcome: applied, failed (with the error), or unknown when
the change was recorded but its outcome was not (the server stopped in
between). With --patient only the changes about that patient: its
consents and grants, and reviews of decisions about it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			w, err := win.window(time.Now())
			if err != nil {
				return err
			}
			recs, err := src.records(cmd.Context())
			if err != nil {
				return err
			}
			cs := audit.Changes(recs, patient, w)
			if cs == nil {
				cs = []audit.ChangeEntry{}
			}
			return out.print(e.stdout, cs, "TIME\tCALLER\tACTION\tTARGET\tPATIENT\tSUBJECT\tOUTCOME\tDETAIL", func(row func(...any)) {
				for _, c := range cs {
					outcome := c.Outcome
					if c.Error != "" {
						outcome += " (" + c.Error + ")"
					}
					row(c.Time, cell(c.Caller), string(c.Action), cell(changeTarget(c)), cell(c.Patient), cell(c.Subject), cell(outcome), changeDetail(c))
				}
			})
		},
	}
	src.register(cmd.Flags())
	win.register(cmd.Flags())
	out.register(cmd.Flags())
	cmd.Flags().StringVar(&patient, "patient", "", "only changes about this patient, as a FHIR reference (Patient/52)")
	return cmd
}

// cell is s for a table cell: quoted when it holds anything but printable
// characters and spaces, so a caller's id cannot forge a row.
func cell(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

// changeTarget is what a change acted on.
func changeTarget(c audit.ChangeEntry) string {
	switch {
	case c.ConsentID != "":
		return "consent " + c.ConsentID
	case c.GrantID != "":
		return "grant " + c.GrantID
	case c.ClientID != "":
		return "agreement " + c.ClientID
	case c.RelationshipID != "":
		return "relationship " + c.RelationshipID
	case c.Revision != "":
		return "bundle " + c.Revision
	case c.DecisionID != "":
		return "decision " + c.DecisionID
	case c.JTI != "":
		return "token jti " + cell(c.JTI)
	case c.TokenSHA256 != "":
		return "token sha256 " + c.TokenSHA256
	}
	return ""
}

// changeDetail is the rest of a change, in one cell.
func changeDetail(c audit.ChangeEntry) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+cell(v))
		}
	}
	add("version", c.Version)
	add("status", c.Status)
	add("fhir", c.FHIRVersion)
	if c.Expires != nil {
		add("expires", c.Expires.UTC().Format(time.RFC3339))
	}
	if c.Reason != "" {
		add("reason", strconv.Quote(c.Reason))
	}
	add("vendor", c.Vendor)
	add("tier", c.Tier)
	add("kind", c.RelationshipKind)
	add("organization", c.Organization)
	if c.Start != nil {
		add("start", c.Start.UTC().Format(time.RFC3339))
	}
	if c.End != nil {
		add("end", c.End.UTC().Format(time.RFC3339))
	}
	if c.Action == audit.ChangeAgreementPut {
		add("baa", strconv.FormatBool(c.BAASigned))
	}
	add("purposes", strings.Join(c.Purposes, ","))
	add("resourceTypes", strings.Join(c.ResourceTypes, ","))
	add("digest", c.Digest)
	add("signers", strings.Join(c.Signers, ","))
	add("previous", c.PreviousRevision)
	if c.Downgrade {
		add("downgrade", "true")
	}
	add("source", c.Source)
	add("by", c.ReviewedBy)
	if c.Note != "" {
		add("note", strconv.Quote(c.Note))
	}
	return strings.Join(parts, " ")
}

// countList renders {"Observation": 3, "Patient": 1} as "Observation:3,Patient:1".
func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ",")
}

// source is where the AuditService reads the decision log serve writes
// (the primary log: the file, or the Redis stream when it is the only
// log), and the public key it is signed with, if any.
func (f *auditFlags) source(fileGiven bool) (server.AuditSource, []ed25519.PublicKey, func(), error) {
	var keys []ed25519.PublicKey
	if f.keyFile != "" {
		s, err := audit.LoadSigner(f.keyFile)
		if err != nil {
			return nil, nil, nil, usageErrorf("--audit-key: %v", err)
		}
		keys = append(keys, s.Public())
	}
	if f.redisURL == "" || fileGiven {
		path := f.file
		return func(context.Context) iter.Seq2[audit.Entry, error] { return audit.ReadFiles(path) }, keys, func() {}, nil
	}
	rdb, err := newRedisClient(f.redisURL, 5*time.Second)
	if err != nil {
		return nil, nil, nil, usageErrorf("--audit-redis: %v", err)
	}
	stream := f.stream
	if stream == "" {
		stream = defaultAuditStream()
	}
	return func(ctx context.Context) iter.Seq2[audit.Entry, error] { return audit.ReadStream(ctx, rdb, stream) }, keys, func() { rdb.Close() }, nil
}
