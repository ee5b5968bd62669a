package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/validation"
)

// redactedBreakGlassReason replaces a recorded break-glass justification in
// exported requests unless --break-glass-reasons: a valid reason (20 or
// more non-space characters), so a replay still sees one was given, that
// says nothing about the patient.
const redactedBreakGlassReason = "break-glass reason recorded in the audit log, not exported"

// newAuditExportRequestsCmd is `chaperone audit export-requests`.
func newAuditExportRequestsCmd(e *env) *cobra.Command {
	var (
		src          auditSource
		win          windowFlags
		sample       int
		seed         uint64
		output       string
		keepBGReason bool
	)
	cmd := &cobra.Command{
		Use:   "export-requests [--since T] [--until T] [--sample N [--seed S]] [--file F | --redis URL [--stream S]] [--audit-encryption-key-file K] [-o FILE] [--break-glass-reasons]",
		Short: "Write the CheckRequests of recorded decisions as JSON lines, for bundle diff --requests",
		Long: `export-requests rebuilds the CheckRequest of every decision record of the
audit log (decided in [--since, --until)) and writes them, one proto3 JSON
object a line, in log order, to stdout or -o FILE: real traffic for
"chaperone bundle diff OLD NEW --requests FILE" to replay.

A record keeps every request field a decision depends on (subject id, kind,
roles, organization, identifiers, scopes, client and launch patient;
resource type, id, patient, organization, author, labels, codes,
categories, date, profiles; purpose of use; network zone, device trust,
IP, phase, correlation id) as identifiers and codes, never resource
content. context.time is the request's own time, or the time the decision
was made, so a replay decides at the same instant. A break-glass
justification is free text and is replaced by a fixed reason unless
--break-glass-reasons (the replay sees that one was given).

--sample N keeps N records chosen uniformly at random (reservoir sampling,
seeded by --seed, so the same log and seed give the same sample), written
in log order. A line of the log that is not a record fails the command (run
chaperone audit verify); a record whose request would not pass the API's
rules today is left out and counted. The last line on stderr says how many
requests were written. A log written with --audit-encryption-key-file needs
the same key set here: its identifying fields are opened for the export
(the export then names patients and subjects in clear text; keep it where
the log is kept), and without the key the command refuses.

Exit 0, or 2 for bad usage or an unreadable log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sample < 0 {
				return usageErrorf("--sample %d: want a positive number of requests", sample)
			}
			w, err := win.window(time.Now())
			if err != nil {
				return err
			}
			v, err := validation.New()
			if err != nil {
				return err
			}
			fk, err := loadFieldKeys(src.keys)
			if err != nil {
				return err
			}
			chains, _, closeFn, err := src.chains(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			picked, decisions, err := pickDecisions(chains, w, sample, seed)
			if err != nil {
				return err
			}
			recs := make([]audit.Record, len(picked))
			for i, p := range picked {
				recs[i] = p.rec
			}
			// Sealed identifying fields open with the key set; without it
			// the export refuses rather than write ciphertext as ids.
			if err := audit.OpenRecords(recs, fk); err != nil {
				return usageErrorf("%v", err)
			}
			out := e.stdout
			var f *os.File
			if output != "" {
				if f, err = os.Create(output); err != nil {
					return usageErrorf("-o: %v", err)
				}
				out = f
			}
			n, skipped, err := writeExportedRequests(out, recs, v, keepBGReason)
			if f != nil {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				return err
			}
			if skipped > 0 {
				fmt.Fprintf(e.stderr, "%d records left out: their request breaks the API's rules\n", skipped)
			}
			fmt.Fprintf(e.stderr, "exported %d requests of %d decisions\n", n, decisions)
			return nil
		},
	}
	src.register(cmd.Flags())
	win.register(cmd.Flags())
	cmd.Flags().IntVar(&sample, "sample", 0, "keep this many decisions, chosen at random (0: all)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "with --sample: the seed of the random choice")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the requests to this file (default stdout)")
	cmd.Flags().BoolVar(&keepBGReason, "break-glass-reasons", false, "export break-glass justifications as recorded (free text) instead of a fixed reason")
	return cmd
}

// picked is a decision record and where it was in the log.
type picked struct {
	seq int
	rec audit.Record
}

// pickDecisions reads the decision records in w from every chain, all of
// them or, with sample > 0, a uniform sample of that many (reservoir
// sampling), in log order. It returns how many decisions were in w.
func pickDecisions(chains []chain, w audit.Window, sample int, seed uint64) ([]picked, int, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var (
		out []picked
		n   int
	)
	for _, c := range chains {
		for e, err := range c.entries {
			if err != nil {
				return nil, 0, err
			}
			var r audit.Record
			if err := json.Unmarshal(e.Line, &r); err != nil {
				return nil, 0, fmt.Errorf("%s: %w: %v (run chaperone audit verify)", e.Where, audit.ErrMalformed, err)
			}
			if r.Kind != audit.KindDecision || !w.Contains(r.Time) {
				continue
			}
			p := picked{seq: n, rec: r}
			n++
			switch {
			case sample == 0 || len(out) < sample:
				out = append(out, p)
			default:
				if j := rng.IntN(n); j < sample {
					out[j] = p
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, n, nil
}

// writeExportedRequests writes the request of every record as one line of proto3
// JSON, leaving out (and counting) those the API's rules refuse.
func writeExportedRequests(w io.Writer, recs []audit.Record, v *validation.Validator, keepBGReason bool) (written, skipped int, err error) {
	bw := bufio.NewWriter(w)
	for i := range recs {
		req := recs[i].CheckRequest()
		if !keepBGReason && req.GetContext().GetBreakGlassReason() != "" {
			req.Context.BreakGlassReason = redactedBreakGlassReason
		}
		if v.Validate(req) != nil {
			skipped++
			continue
		}
		raw, err := protojson.Marshal(req)
		if err != nil {
			return written, skipped, err
		}
		// protojson varies its spacing on purpose; one compact line each.
		var line []byte
		if line, err = compactJSON(raw); err != nil {
			return written, skipped, err
		}
		bw.Write(line)
		bw.WriteByte('\n')
		written++
	}
	return written, skipped, bw.Flush()
}

func compactJSON(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
