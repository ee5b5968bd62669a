// Package bundles makes, signs, verifies, loads and compares versioned
// policy bundles, so that production runs only what reviewers approved and
// reviewers see what a change does to real decisions.
//
// # Format
//
// A bundle is a deterministic tar.gz of a policy directory (manifest.yaml,
// Cedar and Rego sources, data/*.json, tests and documentation: files
// ending in .cedar, .rego, .json, .yaml, .yml or .md; hidden files and
// anything else are left out) plus metadata under .bundle/, which the
// engine never reads as policy:
//
//   - .bundle/manifest.json, the bundle [Manifest]: format, name and
//     revision (from manifest.yaml), whether the policy tests passed, were
//     skipped or were not run, and the path, size and SHA-256 of every file.
//     The bundle's digest is "sha256:" and the hex SHA-256 of these bytes.
//   - .bundle/signatures.json, {"signatures": [...]}: detached JWS compact
//     serialisations (RFC 7515 appendix F, "<header>..<signature>") with
//     alg EdDSA (Ed25519), typ "chaperone-bundle+jws" and a kid, whose
//     payload is the exact bytes of .bundle/manifest.json.
//
// Signatures live inside the archive, so one file (or one URL) carries the
// bundle and its approvals; signing rewrites the archive but not the
// manifest, so the digest a reviewer approved stays the same however many
// reviewers sign. Entries are sorted by path, with mode 0644, uid and gid
// 0, no owner names and a fixed modification time, and the gzip header has
// no name or time: the same files always give the same bytes. An unpacked
// bundle (tar xzf) is a policy directory that still verifies.
//
// # Use
//
// [Build] compiles a policy directory (refusing one that does not compile,
// fails the engine's static checks ([engine.StaticCheckError]; also with
// SkipTests) or whose tests fail; the test runner is a [TestRunner] the caller passes,
// the CLI passes package policytest's), [Archive.Sign] adds a signature, [Verify] checks the
// digests and counts distinct trusted signers, failing with a
// [*VerifyError] that names the file concerned. [ReadArchive] and [ReadDir]
// read bundles back.
//
// A [Loader] takes bundles from a [Source] ([FileSource], [DirSource],
// [URLSource] with If-None-Match), verifies and compiles them off the hot
// path and activates the good ones on an [Activator] (the engine), which
// swaps them atomically. A bad bundle is refused and logged, and the last
// good one keeps deciding; [Loader.Status] says which one is active and
// why the last attempt failed. With trusted keys ([WithTrustedKeys]) an
// unsigned bundle never activates. A bundle whose revision is not newer
// than the active one ([CompareRevisions]) is refused with a
// [*DowngradeError] (a rollback), unless [WithAllowDowngrade]; an
// [ActivationRecorder] ([WithActivationRecorder]) is told of every
// activation before it happens and can refuse it. [Loader.Run] polls the
// source.
//
// [Diff] replays recorded CheckRequests against two bundles and reports,
// counting each request once, the decisions that changed, the same
// decisions given for other reasons (another reason code or deciding
// policy) and the same decisions with other obligations, grouped by old →
// new decision and policy delta, with roles, resource types, reason and
// consent deltas counted within a group and the obligations of new ALLOWs
// ([Report.Markdown] with a legend of its notation; [Report.JSON], shape
// [ReportVersion]).
package bundles
