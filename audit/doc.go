// Package audit is Chaperone's tamper-evident decision log.
//
// Every decision becomes one [Record]: who asked (subject identifiers, roles,
// organization, client app), what for (action, resource identifiers and
// labels, purpose of use), in which circumstance (ip, network zone,
// correlation id, break-glass reason) and what was answered (decision,
// reason codes, obligations, bundle revision, consents used). Records carry
// identifiers only, never PHI payloads, but every request field a decision
// depends on (scopes, device trust, the resource's codes, …), so
// [Record.CheckRequest] rebuilds the request for replaying it against
// another bundle (chaperone audit export-requests, bundle diff).
//
// Records form a hash chain: each stored line is the JSON of the record with
// its sequence number and the SHA-256 of the previous line ("prev"), followed
// by the SHA-256 of the line itself ("hash", always the last field).
//
// With a signing key ([WithSigner], Ed25519) the log cannot be forged or cut
// unnoticed:
//   - it begins with a signed [KindGenesis] record ([Opening]) naming the
//     writer's instance ([WithInstance]), its key and its checkpoint cadence
//     ([WithCheckpoints]: N records, T of record time); a writer taking up an
//     existing log writes a signed [KindRestart] record over the head it found;
//   - a [KindCheckpoint] record signs the head before any record that would
//     otherwise be the N+1st unsigned one, or come T after the last signed
//     record (and the first one since); [Log.Close] ends the log with a
//     checkpoint marked [Checkpoint].Closed, the signed clean-shutdown marker;
//   - with [WithAnchor] every checkpoint's head also goes to a second place
//     ([FileAnchor], [RedisAnchor]); a log that ends before its anchored head
//     was cut, and a writer started on it refuses to continue;
//   - the writer halts for good ([ErrHalted], [Stats].Halted) when the head
//     it finds is behind the one it last wrote, or its file was replaced or
//     deleted ([ErrRewound]): every Record then fails, so the server denies.
//
// [VerifyWith] walks a chain and reports the first bad record as a
// [*TamperError] wrapping one of [ErrMalformed], [ErrHashMismatch],
// [ErrBrokenLink], [ErrBadSignature], [ErrUnknownKey], [ErrNoGenesis],
// [ErrCadence], [ErrAfterClose], [ErrOpenTail] (the log was not closed
// cleanly; accepted with [VerifyOptions].AllowOpenTail), [ErrInstance] or
// [ErrAnchor]. chaperone audit verify --pub KEY [--anchor FILE|redis://…]
// [--allow-open-tail] [--instance ID] runs it: exit 0 intact, 1 tampered,
// open or short of the anchor, 2 unreadable.
//
// A [Log] is the [server.Recorder]: [Log.Record] puts the request and
// response into a bounded queue and returns (no I/O and no copy on the
// request goroutine; the messages are retained, so the caller must not
// modify them afterwards); one writer goroutine copies their identifiers
// into a [Record], chains and appends batches to a [Sink] (group commit: after
// a partial batch it waits [WithSyncDelay] so the records arriving meanwhile
// share one write and fsync): a [FileSink]
// (append-only JSON lines, one fsync per batch, rotation by size, the chain
// continuing across files) or a [RedisSink] (XADD to a stream). When the
// queue is full, [Log.Record] waits a bounded time (backpressure) and then
// either fails ([ErrUnavailable], the server answers DENY AUDIT_UNAVAILABLE)
// or, with fail-open configured, counts the drop in [Stats] and the log and
// notes it in the chain. [Log.Close] drains the queue and writes a final
// checkpoint. By default ("queued") Record returns once the record is
// queued, so a crash loses what was queued but not yet stored; with
// [WithDurable] ("durable") it returns only once the record is stored
// (fsynced, or acknowledged by Redis), and [Log.RecordAll] lets a
// BatchCheck wait once for all its records. [Log.Healthy] says whether the
// log keeps records, for readiness probes.
//
// Every record names its caller ([Record].Caller): the identity the
// server authenticated, so two callers' decisions can be told apart.
// Administrative changes of who may see what (consents, break-glass grants,
// vendor agreements put or revoked; bundle activations) are [KindChange]
// records on the same chain: [Log.Change] stores the record of a change
// before it is made and returns only once it is stored, so the server can
// refuse a change it could not record; [Log.ChangeOutcome] then notes
// whether it was applied (see [Change]). [Changes] reads the
// administrative history back, with the reviews of decisions.
//
// With [WithFieldKeys] the identifying fields of every record (the
// subject's id, the resource's id and patient, the IP, free-text reasons;
// see [FieldKeys]) are sealed per field with AES-256-GCM under a
// [keyset.Set] before the record is chained, with a blind index of the
// patient and subject ([Index]); [FieldKeys.MatchPatient] finds a patient's
// records through it and [OpenRecords] opens them for the reports. The
// chain covers the sealed values, so verification needs no key.
//
// [PruneFile] removes, or archives, old rotated segments of a file log
// behind signed [PruneAnchor] records (PATH.pruned, [ReadPruneAnchors]);
// [VerifyOptions].Pruned lets verification start from the first record
// kept, and [Log.RecordPrune] puts the prune on the chain.
//
// The reports a privacy officer reads ([Disclosures], [BreakGlass],
// [Anomalies], [Recertify], [Changes]) work on the records read back with [ReadFiles]
// or [ReadStream].
//
// [server.Recorder]: https://pkg.go.dev/github.com/chaperone-pdp/chaperone/server#Recorder
package audit
