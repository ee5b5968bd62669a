package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine/consent"
	"github.com/chaperone-pdp/chaperone/fhirconsent"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/validation"
)

// newConsentCmd is "chaperone consent": evaluate and import FHIR consents.
func newConsentCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consent",
		Short: "Evaluate and import FHIR Consent resources",
	}
	cmd.AddCommand(newConsentEvalCmd(e), newConsentImportCmd(e), newConsentReencryptCmd(e), newConsentPruneCmd(e))
	return cmd
}

func newConsentEvalCmd(e *env) *cobra.Command {
	var requestFile, ruleName string
	cmd := &cobra.Command{
		Use:   "eval --request REQ.json CONSENT.json [CONSENT.json ...] [--rule most-recent|deny-overrides]",
		Short: "Evaluate a CheckRequest against FHIR consents and print the consent decision",
		Long: `eval evaluates one CheckRequest (proto3 JSON) against FHIR Consent
resources (R4 or R5; single resources, Bundles or NDJSON) with the FHIR
consent semantics of the decision point, and prints one JSON object:

  {"decision": "PERMIT" | "DENY" | "NO_CONSENT",
   "obligations": {"redactLabels": [{"system": ..., "code": ...}]},
   "consents": [{"id": ..., "version": ...}], "provisions": ["Consent/<id>#<path>"]}

The request's resource.type may be empty (a query not about one resource).
The request time is context.time, else now. A consent without an id is named
after its file. Exit 0 for any decision, 2 for bad input.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if requestFile == "" {
				return usageErrorf("--request is required")
			}
			rule, err := consent.ParseRule(ruleName)
			if err != nil {
				return usageErrorf("--rule: %v", err)
			}
			req, err := readEvalRequest(e, requestFile)
			if err != nil {
				return err
			}
			var consents []*fhirconsent.Consent
			for _, f := range args {
				cs, err := readConsentFile(f)
				if err != nil {
					return err
				}
				consents = append(consents, cs...)
			}
			at := time.Now()
			if t := req.GetContext().GetTime(); t != nil {
				at = t.AsTime() // offline: decide at the time the request states
			}
			q := consent.NewQuery(req, at)
			res := consent.Evaluate(&q, consents, rule)
			return printEvalResult(e, res)
		},
	}
	cmd.Flags().StringVar(&requestFile, "request", "", "CheckRequest JSON file (- for stdin)")
	cmd.Flags().StringVar(&ruleName, "rule", "most-recent", "how several applicable consents combine: most-recent or deny-overrides")
	return cmd
}

// readEvalRequest reads a CheckRequest and validates it, allowing an empty
// or missing resource.type (a query not about one resource type).
func readEvalRequest(e *env, file string) (*chaperonev1.CheckRequest, error) {
	data, err := readInput(e, file)
	if err != nil {
		return nil, err
	}
	req := &chaperonev1.CheckRequest{}
	if err := protojson.Unmarshal(data, req); err != nil {
		return nil, usageErrorf("%s: %s", file, strings.TrimPrefix(err.Error(), "proto: "))
	}
	v, err := validation.New()
	if err != nil {
		return nil, err
	}
	err = v.Validate(req)
	var verr *validation.Error
	if errors.As(err, &verr) {
		kept := verr.Violations[:0:0]
		for _, viol := range verr.Violations {
			if viol.Field == "resource" && req.GetResource() == nil ||
				viol.Field == "resource.type" && req.GetResource().GetType() == "" {
				continue
			}
			kept = append(kept, viol)
		}
		if len(kept) == 0 {
			err = nil
		} else {
			err = &validation.Error{Violations: kept}
		}
	}
	if err != nil {
		return nil, usageErrorf("%s: %v", file, err)
	}
	if req.Resource == nil {
		req.Resource = &chaperonev1.Resource{}
	}
	return req, nil
}

// readConsentFile parses a file of consents; one without an id is named
// after the file ("<name>" or "<name>-<n>" when the file holds several).
func readConsentFile(file string) ([]*fhirconsent.Consent, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usageErrorf("read consent: %v", err)
	}
	cs, err := fhirconsent.ParseMany(data)
	if err != nil {
		return nil, usageErrorf("%s: %v", file, err)
	}
	stem := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	for i, c := range cs {
		if c.ID != "" {
			continue
		}
		id := stem
		if len(cs) > 1 {
			id += "-" + strconv.Itoa(i+1)
		}
		cs[i] = c.WithID(id, c.Version)
	}
	return cs, nil
}

type evalOutput struct {
	Decision    string                   `json:"decision"`
	Obligations evalObligations          `json:"obligations"`
	Consents    []fhirconsent.ConsentRef `json:"consents"`
	Provisions  []string                 `json:"provisions"`
}

type evalObligations struct {
	RedactLabels []fhirconsent.Coding `json:"redactLabels"`
}

func printEvalResult(e *env, res consent.Result) error {
	out := evalOutput{
		Decision:    res.Decision.String(),
		Obligations: evalObligations{RedactLabels: append([]fhirconsent.Coding{}, res.RedactLabels...)},
		Consents:    append([]fhirconsent.ConsentRef{}, res.Consents...),
		Provisions:  append([]string{}, res.Provisions...),
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// Import batches: at most the server's PutBatch limit, and about 1 MiB so
// that a batch stays well under serve's --max-request-bytes (4 MiB).
const (
	maxImportBatch   = 1000
	importBatchBytes = 1 << 20
)

func newConsentImportCmd(e *env) *cobra.Command {
	var to string
	var progressEvery, concurrency, batchSize int
	cmd := &cobra.Command{
		Use:   "import DIR|FILE --to ADDR",
		Short: "Load FHIR Consent resources into a server through its ConsentService",
		Long: `import reads FHIR Consent resources (single resources, Bundles or NDJSON;
every *.json and *.ndjson file under a directory), checks each one, and
stores it through the ConsentService of the server at ADDR (e.g.
http://127.0.0.1:8787). Progress goes to stderr, a summary to stdout.
Exit 0 when every consent was stored, 1 when the server refused or failed,
2 for bad input (nothing is sent when a file is bad).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageErrorf("--to is required (e.g. http://127.0.0.1:8787)")
			}
			if !strings.HasPrefix(to, "http://") && !strings.HasPrefix(to, "https://") {
				to = "http://" + to
			}
			files, err := consentstore.ConsentFiles(args[0])
			if err != nil {
				return usageErrorf("%v", err)
			}
			type item struct {
				file string
				msg  *structpb.Struct
			}
			var items []item
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return usageErrorf("read consent: %v", err)
				}
				cs, err := fhirconsent.ParseMany(data)
				if err != nil {
					return usageErrorf("%s: %v", f, err)
				}
				for _, c := range cs {
					st := &structpb.Struct{}
					if err := protojson.Unmarshal(c.Raw, st); err != nil {
						return usageErrorf("%s: %v", f, err)
					}
					items = append(items, item{file: f, msg: st})
				}
			}
			if concurrency < 1 || batchSize < 1 || batchSize > maxImportBatch {
				return usageErrorf("--concurrency must be at least 1 and --batch between 1 and %d", maxImportBatch)
			}
			// Consents go in PutBatch requests of up to --batch items (and
			// about 1 MiB), --concurrency requests in flight on kept-alive
			// connections: the server stores the items of a batch
			// concurrently, so Redis round trips overlap instead of
			// costing one request each.
			type batch struct{ from, to int }
			var batches []batch
			for from := 0; from < len(items); {
				to, size := from, 0
				for to < len(items) && to-from < batchSize && (to == from || size+proto.Size(items[to].msg) <= importBatchBytes) {
					size += proto.Size(items[to].msg)
					to++
				}
				batches = append(batches, batch{from, to})
				from = to
			}
			transport := http.DefaultTransport.(*http.Transport).Clone()
			transport.MaxIdleConnsPerHost = concurrency
			client := chaperonev1connect.NewConsentServiceClient(&http.Client{Timeout: 5 * time.Minute, Transport: transport}, strings.TrimRight(to, "/"))
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var (
				next, stored atomic.Int64
				mu           sync.Mutex
				firstErr     error
				wg           sync.WaitGroup
			)
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
			start := time.Now()
			for range min(concurrency, max(len(batches), 1)) {
				wg.Go(func() {
					for ctx.Err() == nil {
						b := int(next.Add(1)) - 1
						if b >= len(batches) {
							return
						}
						req := &chaperonev1.ConsentServicePutBatchRequest{}
						for _, it := range items[batches[b].from:batches[b].to] {
							req.Items = append(req.Items, &chaperonev1.ConsentServicePutRequest{Consent: it.msg})
						}
						resp, err := client.PutBatch(ctx, connect.NewRequest(req))
						if err != nil {
							if ctx.Err() == nil {
								fail(fmt.Errorf("import %s: %w", items[batches[b].from].file, err))
							}
							return
						}
						before := stored.Load()
						for k, r := range resp.Msg.GetResults() {
							if r.GetCode() != "" {
								fail(fmt.Errorf("import %s: %s: %s", items[batches[b].from+k].file, r.GetCode(), r.GetMessage()))
								continue
							}
							stored.Add(1)
						}
						if progressEvery > 0 && len(items) > progressEvery {
							if n := stored.Load(); n/int64(progressEvery) > before/int64(progressEvery) {
								fmt.Fprintf(e.stderr, "imported %d/%d consents\n", n, len(items))
							}
						}
					}
				})
			}
			wg.Wait()
			if firstErr != nil {
				return failedf("%v (%d of %d stored)", firstErr, stored.Load(), len(items))
			}
			if err := cmd.Context().Err(); err != nil {
				return failedf("import: %v (%d of %d stored)", err, stored.Load(), len(items))
			}
			took := time.Since(start)
			fmt.Fprintf(e.stdout, "imported %d consents from %d files to %s\n", len(items), len(files), to)
			fmt.Fprintf(e.stderr, "%d consents in %s (%.0f/s; %d requests, %d in flight)\n", len(items), took.Round(time.Millisecond), float64(len(items))/max(took.Seconds(), 1e-9), len(batches), concurrency)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "server address, e.g. http://127.0.0.1:8787")
	cmd.Flags().IntVar(&progressEvery, "progress", 100, "print a progress line every N consents (0: never)")
	cmd.Flags().IntVar(&concurrency, "concurrency", 4, "PutBatch requests in flight at once (each on its own connection)")
	cmd.Flags().IntVar(&batchSize, "batch", 500, fmt.Sprintf("consents per PutBatch request (at most %d, and about 1 MiB); a refused consent stops the import after its batch, and the consents stored before it are not those before it in file order", maxImportBatch))
	return cmd
}
