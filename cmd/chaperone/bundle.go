package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policies"
	"github.com/chaperone-pdp/chaperone/policytest"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/validation"
)

func newBundleCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Build, sign, verify, inspect and compare policy bundles",
		Long: `A bundle is a deterministic tar.gz of a policy directory with a manifest
(.bundle/manifest.json: revision and SHA-256 of every file) and detached
Ed25519 JWS signatures over that manifest (.bundle/signatures.json).
See go doc ./bundles for the format.

Exit codes: 0 ok; 1 the policies do not compile, tests failed, verification
failed or (diff --fail-on-change) decisions changed; 2 usage or input error.`,
	}
	cmd.AddCommand(
		newBundleBuildCmd(e),
		newBundleSignCmd(e),
		newKeygenCmd(e, "Write an Ed25519 key pair for signing bundles: NAME.pem (private, PKCS #8) and NAME.pub.pem (PKIX)"),
		newBundleVerifyCmd(e),
		newBundleInspectCmd(e),
		newBundleDiffCmd(e),
	)
	return cmd
}

// bundleTestRunner runs the policy test suites (*_test.yaml) of the policy
// directory dir with the runner of `chaperone test` (package policytest).
// A directory without suites is recorded as "not-run".
func bundleTestRunner(dir string) bundles.TestRunner {
	return func(ctx context.Context, _ fs.FS) (string, error) {
		suites, err := policytest.FindSuites(dir)
		if err != nil {
			return "", err
		}
		if len(suites) == 0 {
			return "", fmt.Errorf("%w: no %s suites", bundles.ErrNoTests, policytest.SuiteSuffix)
		}
		sum, err := policytest.Run(ctx, dir, policytest.Options{})
		if err != nil {
			return "", err
		}
		if !sum.OK() {
			return "", errors.New(sum.Line())
		}
		return sum.Line(), nil
	}
}

func newBundleBuildCmd(e *env) *cobra.Command {
	var (
		out       string
		skipTests bool
	)
	cmd := &cobra.Command{
		Use:   "build DIR -o bundle.tar.gz [--skip-tests]",
		Short: "Pack a policy directory into a deterministic bundle",
		Long: `build compiles the policies of DIR, runs their tests, and writes a
deterministic archive: the same directory always gives the same bytes. It
refuses policies that do not compile or whose tests fail (exit 1);
--skip-tests builds without running the tests and records that in the
manifest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf("-o is required")
			}
			dir := args[0]
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return usageErrorf("%s: not a policy directory", dir)
			}
			a, err := bundles.Build(cmd.Context(), os.DirFS(dir), bundles.BuildOptions{RunTests: bundleTestRunner(dir), SkipTests: skipTests})
			if err != nil {
				var ce *engine.CompileError
				var tf *bundles.TestsFailedError
				if errors.As(err, &ce) || errors.As(err, &tf) || errors.Is(err, engine.ErrNoPolicies) {
					return failedf("build %s: %v", dir, err)
				}
				return usageErrorf("build %s: %v", dir, err)
			}
			if err := writeArchive(out, a); err != nil {
				return err
			}
			m := a.Manifest()
			tests := m.Tests.Status
			if m.Tests.Detail != "" {
				tests += " (" + m.Tests.Detail + ")"
			}
			fmt.Fprintf(e.stdout, "built %s: %s revision %s, %d files, tests %s\n%s\n", out, m.Name, m.Revision, len(m.Files), tests, a.Digest())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "archive to write")
	cmd.Flags().BoolVar(&skipTests, "skip-tests", false, "do not run the policy tests (recorded in the manifest)")
	return cmd
}

func newBundleSignCmd(e *env) *cobra.Command {
	var (
		keyFile, keyID, out string
	)
	cmd := &cobra.Command{
		Use:   "sign BUNDLE --key ed25519.pem [--key-id ID] [-o OUT]",
		Short: "Add a detached Ed25519 JWS signature to a bundle",
		Long: `sign checks the bundle's digests, then adds a signature of the bundle
manifest (JWS, EdDSA) to .bundle/signatures.json in the archive, replacing
an earlier signature of the same key. Several reviewers sign one by one.
The key id defaults to the key's JWK thumbprint. The bundle's digest does
not change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return usageErrorf("--key is required")
			}
			raw, err := os.ReadFile(keyFile)
			if err != nil {
				return usageErrorf("--key: %v", err)
			}
			key, err := bundles.ParsePrivateKey(raw)
			if err != nil {
				return usageErrorf("--key %s: %v", keyFile, err)
			}
			a, err := readArchiveFile(args[0])
			if err != nil {
				return err
			}
			if _, err := bundles.Verify(a, bundles.VerifyOptions{}); err != nil {
				return failedf("%s: %v", args[0], err)
			}
			if err := a.Sign(key, keyID); err != nil {
				return err
			}
			if out == "" {
				out = args[0]
			}
			if err := writeArchive(out, a); err != nil {
				return err
			}
			id := keyID
			if id == "" {
				id = bundles.KeyID(key.Public().(ed25519.PublicKey))
			}
			fmt.Fprintf(e.stdout, "signed %s as %s (%d signatures)\n", out, id, len(a.Signatures()))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "Ed25519 private key (PKCS #8 PEM, from bundle keygen)")
	cmd.Flags().StringVar(&keyID, "key-id", "", "key id in the signature (default: the key's JWK thumbprint)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the signed bundle here (default: in place)")
	return cmd
}

func newBundleVerifyCmd(e *env) *cobra.Command {
	var (
		pubFiles []string
		min      int
	)
	cmd := &cobra.Command{
		Use:   "verify BUNDLE --pub KEY.pem... [--min-signatures N]",
		Short: "Check a bundle's digests and signatures",
		Long: `verify exits 0 only when every file matches its digest in the manifest,
the manifest lists every file, and at least N distinct keys among the
--pub keys signed it (default 1). A failure exits 1 and names the file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(pubFiles) == 0 {
				return usageErrorf("--pub is required (one or more trusted public keys)")
			}
			keys, err := readPublicKeys(pubFiles)
			if err != nil {
				return err
			}
			a, err := readArchiveFile(args[0])
			if err != nil {
				return err
			}
			v, err := bundles.Verify(a, bundles.VerifyOptions{Keys: keys, MinSignatures: min})
			if err != nil {
				return failedf("%s: %v", args[0], err)
			}
			m := a.Manifest()
			fmt.Fprintf(e.stdout, "verified %s: %s revision %s, %s, signed by %s\n", args[0], m.Name, m.Revision, v.Digest, strings.Join(v.Signers, ", "))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&pubFiles, "pub", nil, "trusted Ed25519 public key (PEM); repeat or comma-separate for several")
	cmd.Flags().IntVar(&min, "min-signatures", 1, "how many distinct trusted keys must have signed")
	return cmd
}

func newBundleInspectCmd(e *env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect BUNDLE [--format text|json]",
		Short: "Print a bundle's revision, files, digests and signers",
		Long: `inspect prints what a bundle claims: revision, digest, test status, files
with their SHA-256, and the key ids of its signatures. It checks nothing;
use bundle verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := readArchiveFile(args[0])
			if err != nil {
				return err
			}
			if !a.Built() {
				return usageErrorf("%s: no bundle manifest", args[0])
			}
			m := a.Manifest()
			switch format {
			case "json":
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					*bundles.Manifest
					Digest     string              `json:"digest"`
					Signatures []bundles.Signature `json:"signatures"`
				}{m, a.Digest(), a.Signatures()})
			case "text":
			default:
				return usageErrorf("--format %q: want text or json", format)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "name:     %s\nrevision: %s\ndigest:   %s\ntests:    %s", m.Name, m.Revision, a.Digest(), m.Tests.Status)
			if m.Tests.Detail != "" {
				fmt.Fprintf(&b, " (%s)", m.Tests.Detail)
			}
			b.WriteString("\nsigners (claimed, not verified):")
			if len(a.Signatures()) == 0 {
				b.WriteString(" none")
			}
			b.WriteString("\n")
			for _, s := range a.Signatures() {
				fmt.Fprintf(&b, "  %s (%s)\n", s.KeyID, s.Algorithm)
			}
			b.WriteString("files:\n")
			for _, f := range m.Files {
				fmt.Fprintf(&b, "  %s  %8d  %s\n", f.SHA256, f.Size, f.Path)
			}
			_, err = io.WriteString(e.stdout, b.String())
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func newBundleDiffCmd(e *env) *cobra.Command {
	var (
		requestsFile, format, consentsDir string
		failOnChange                      bool
		samples                           int
	)
	cmd := &cobra.Command{
		Use:   "diff OLD NEW --requests FILE [--format markdown|json] [--fail-on-change] [--consents DIR]",
		Short: "Replay recorded requests against two bundles and report what changed",
		Long: `diff replays CheckRequests (proto3 JSON, one per line, as written by
chaperone audit export-requests) against OLD and NEW (bundle archives or
policy directories) and prints a Markdown report for a pull request.

Every request is counted once: its decision changed; or the same decision
for other reasons (a reason code or deciding policy changed, e.g. a forbid
now says RESEARCH_CONSENT_REQUIRED where it said
DEIDENTIFICATION_REQUIRED); or the same decision with other obligations
(counted by kind: mask paths, redacted labels, audit tags, perEntryCheck);
or unchanged. Decision and reason changes are grouped by old → new decision
and policy delta ("+id": a policy that decides only under NEW, "-id": only
under OLD; the changed reason codes when both name the same policies), with
the roles, resource types, reason codes and consent deltas of each group
counted, and for a new ALLOW the obligations it carries. The report starts
with a legend of the +/- notation. Samples quote the recorded requests:
mind what they contain before posting the report.

--format json writes the same report as JSON (shape "version": 2; see the
README): every list present and sorted, most requests first.

Without --consents the replay has no consents: every request about a
patient sees NO_CONSENT in both bundles. With --consents, the FHIR Consent
resources of DIR are evaluated as the server would.

Exit 0, or 1 with --fail-on-change when a decision, its reasons or its
obligations changed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if requestsFile == "" {
				return usageErrorf("--requests is required")
			}
			if format != "markdown" && format != "json" {
				return usageErrorf("--format %q: want markdown or json", format)
			}
			oldB, oldDigest, err := loadForDiff(args[0])
			if err != nil {
				return err
			}
			newB, newDigest, err := loadForDiff(args[1])
			if err != nil {
				return err
			}
			v, err := validation.New()
			if err != nil {
				return err
			}
			f, err := os.Open(requestsFile)
			if err != nil {
				return usageErrorf("--requests: %v", err)
			}
			reqs, err := bundles.ReadRequests(f, v)
			f.Close()
			if err != nil {
				return usageErrorf("%s: %v", requestsFile, err)
			}
			mem := consentstore.NewMemory()
			note := "replayed without consents (every request about a patient sees NO_CONSENT)"
			if consentsDir != "" {
				n, err := mem.Load(ctx, consentsDir)
				if err != nil {
					return usageErrorf("--consents: %v", err)
				}
				note = fmt.Sprintf("replayed with the %d FHIR Consent resources of %s", n, filepath.Base(consentsDir))
			}
			r := bundles.Diff(ctx, oldB, newB, reqs, bundles.DiffOptions{
				Consents:     engine.StoreConsents(mem),
				ConsentsNote: note,
				Samples:      samples,
				OldDigest:    oldDigest,
				NewDigest:    newDigest,
			})
			if format == "json" {
				err = r.JSON(e.stdout)
			} else {
				err = r.Markdown(e.stdout)
			}
			if err != nil {
				return err
			}
			if failOnChange && r.Changed+r.ReasonsChanged+r.ObligationsChanged > 0 {
				return failedf("%d decisions, %d reasons and %d obligations changed", r.Changed, r.ReasonsChanged, r.ObligationsChanged)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&requestsFile, "requests", "", "CheckRequests, one JSON object per line")
	cmd.Flags().StringVar(&format, "format", "markdown", "markdown or json")
	cmd.Flags().BoolVar(&failOnChange, "fail-on-change", false, "exit 1 when a decision, its reasons or its obligations changed")
	cmd.Flags().StringVar(&consentsDir, "consents", "", "directory or file of FHIR Consent resources to replay against")
	cmd.Flags().IntVar(&samples, "samples", 3, "sample requests per group")
	return cmd
}

// loadForDiff reads a bundle archive or a policy directory, checks its
// digests when it has a manifest, and compiles it.
func loadForDiff(path string) (*engine.Bundle, string, error) {
	var (
		a   *bundles.Archive
		err error
	)
	if st, serr := os.Stat(path); serr == nil && st.IsDir() {
		a, err = bundles.ReadDir(os.DirFS(path))
		if err != nil {
			return nil, "", usageErrorf("%s: %v", path, err)
		}
	} else if a, err = readArchiveFile(path); err != nil {
		return nil, "", err
	}
	if a.Built() {
		if _, err := bundles.Verify(a, bundles.VerifyOptions{}); err != nil {
			return nil, "", failedf("%s: %v", path, err)
		}
	}
	b, err := a.Compile()
	if err != nil {
		return nil, "", failedf("%s: %v", path, err)
	}
	return b, a.Digest(), nil
}

func readArchiveFile(path string) (*bundles.Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	defer f.Close()
	a, err := bundles.ReadArchive(f)
	if err != nil {
		var ve *bundles.VerifyError
		if errors.As(err, &ve) {
			return nil, failedf("%s: %v", path, err)
		}
		return nil, usageErrorf("%s: %v", path, err)
	}
	return a, nil
}

// writeArchive writes a bundle next to path and renames it into place, so
// a server watching path never reads half a bundle.
func writeArchive(path string, a *bundles.Archive) error {
	raw, err := a.Bytes()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return usageErrorf("write %s: %v", path, err)
	}
	_, werr := io.Copy(tmp, bytes.NewReader(raw))
	if err := errors.Join(werr, tmp.Chmod(0o644), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readPublicKeys(files []string) ([]bundles.PublicKey, error) {
	keys := make([]bundles.PublicKey, 0, len(files))
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			return nil, usageErrorf("public key: %v", err)
		}
		k, err := bundles.ParsePublicKey(raw)
		if err != nil {
			return nil, usageErrorf("public key %s: %v", name, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// bundleFlags are serve's flags for where bundles come from and which keys
// must have signed them.
type bundleFlags struct {
	source        string
	verifyKeys    []string
	minSignatures int
	poll          time.Duration
	downgrade     bool
	loader        *bundles.Loader // set by start
	// record, when set, records every activation before it is made.
	record bundles.ActivationRecorder
}

// addBundleFlags adds --bundle, --verify-key, --min-signatures and
// --bundle-poll-interval to fs.
func addBundleFlags(fs *pflag.FlagSet) *bundleFlags {
	f := &bundleFlags{}
	fs.StringVar(&f.source, "bundle", "", "policy bundle: a bundle archive (.tar.gz), a policy directory or an http(s) URL; watched for new versions (default: the embedded reference bundle)")
	fs.StringSliceVar(&f.verifyKeys, "verify-key", nil, "trusted Ed25519 public key (PEM); when set, only bundles signed by enough of these keys activate")
	fs.IntVar(&f.minSignatures, "min-signatures", 1, "how many distinct --verify-key keys must have signed a bundle")
	fs.DurationVar(&f.poll, "bundle-poll-interval", 5*time.Second, "how often the bundle file, directory or URL is checked for a new version")
	fs.BoolVar(&f.downgrade, "allow-downgrade", false, "activate a bundle whose revision is not newer than the active one (a deliberate rollback, recorded as a downgrade on the audit chain); refused otherwise")
	return f
}

// start loads the bundle into eng (an error when it is bad: serve should
// not start on it), then watches the source in the background: a new
// bundle is verified and compiled off the hot path and swapped in; a bad
// one is logged and refused. It returns the server option that mounts
// BundleService and a stop function that ends the watcher and waits for it.
func (f *bundleFlags) start(ctx context.Context, eng *engine.Engine, logger *slog.Logger) (server.Option, func(), error) {
	keys, err := readPublicKeys(f.verifyKeys)
	if err != nil {
		return nil, nil, err
	}
	if f.minSignatures < 1 || (len(keys) > 0 && f.minSignatures > len(keys)) {
		return nil, nil, usageErrorf("--min-signatures %d: want 1 to the number of --verify-key keys", f.minSignatures)
	}
	if f.poll <= 0 {
		return nil, nil, usageErrorf("--bundle-poll-interval must be positive")
	}
	var (
		src   bundles.Source
		watch = true
	)
	switch {
	case f.source == "":
		if len(keys) > 0 {
			return nil, nil, usageErrorf("--verify-key needs --bundle: the embedded reference bundle is not signed")
		}
		src, watch = bundles.DirSource("embedded", fs.FS(policies.FS)), false
	case strings.HasPrefix(f.source, "http://") || strings.HasPrefix(f.source, "https://"):
		src = bundles.URLSource(f.source, nil)
	default:
		st, err := os.Stat(f.source)
		if err != nil {
			return nil, nil, usageErrorf("--bundle: %v", err)
		}
		if st.IsDir() {
			src = bundles.DirSource(f.source, os.DirFS(f.source))
		} else {
			src = bundles.FileSource(f.source)
		}
	}
	opts := []bundles.LoaderOption{bundles.WithLoaderLogger(logger), bundles.WithAllowDowngrade(f.downgrade)}
	if f.record != nil {
		opts = append(opts, bundles.WithActivationRecorder(f.record))
	}
	if len(keys) > 0 {
		opts = append(opts, bundles.WithTrustedKeys(keys, f.minSignatures))
	}
	loader := bundles.NewLoader(eng, src, opts...)
	f.loader = loader
	if err := loader.Load(ctx); err != nil {
		return nil, nil, failedf("--bundle %s: %v", src, err)
	}
	stop := func() {}
	if watch {
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			loader.Run(wctx, f.poll)
		}()
		stop = func() { cancel(); wg.Wait() }
	}
	return server.WithBundleService(loader), stop, nil
}
