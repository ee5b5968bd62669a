// Package audit is Chaperone's tamper-evident decision log.
//
// Every decision becomes one [Record]: who asked (subject identifiers, roles,
// organization, client app), what for (action, resource identifiers and
// labels, purpose of use), in which circumstance (ip, network zone,
// correlation id, break-glass reason) and what was answered (decision,
// reason codes, obligations, bundle revision, consents used). Records carry
// identifiers only, never PHI payloads.
//
// Records form a hash chain: each stored line is the JSON of the record with
// its sequence number and the SHA-256 of the previous line ("prev"), followed
// by the SHA-256 of the line itself ("hash", always the last field). Every N
// records or T seconds a checkpoint record signs (Ed25519) the head hash and
// the record count, so that rewriting the chain is caught even by someone
// able to recompute hashes. [Verify] walks a chain and reports the first bad
// record as a [*TamperError].
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
// checkpoint.
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
// The reports a privacy officer reads ([Disclosures], [BreakGlass],
// [Anomalies], [Recertify], [Changes]) work on the records read back with [ReadFiles]
// or [ReadStream].
//
// [server.Recorder]: https://pkg.go.dev/github.com/chaperone-pdp/chaperone/server#Recorder
package audit
