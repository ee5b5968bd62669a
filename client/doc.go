// Package client is a Go client for Chaperone's DecisionService that an
// enforcement point can call inline on every request.
//
// A [Client] never returns an error: every failure is an answer. When the
// PDP cannot be reached, does not answer within the deadline
// ([WithTimeout], 1s by default), answers with an error code or with
// something that is not a decision, [Client.Check] returns a DENY with no
// obligations and one reason whose code says why ([ReasonUnavailable],
// [ReasonInvalidRequest], [ReasonBadResponse]). It never turns a failure
// into an ALLOW.
//
//	c, err := client.New("https://pdp.internal:8787",
//		client.WithHTTPClient(mtlsClient), // authenticate by a client certificate,
//		client.WithBearerToken(token),     // or by a bearer token
//		client.WithCache(10_000),          // keep up to 10,000 decisions
//		client.WithBatchWindow(500*time.Microsecond)) // coalesce concurrent Checks
//	resp := c.Check(ctx, req)
//	if resp.GetDecision() != chaperonev1.Decision_DECISION_ALLOW {
//		// refuse, with resp.GetReasons()
//	}
//
// # Decision cache
//
// With [WithCache] the client keeps answers for as long as the server says
// they may be reused (the response's cacheTtl; 0 or absent: not kept), in a
// least-recently-used cache bounded by a number of entries. The key is the
// deterministic protobuf encoding of the whole request except two fields
// that change on every call and never change a decision: context.time (the
// server decides at its own clock) and context.correlationId (it only
// labels logs and audit records). Every other field, including fields
// added to the API later, is part of the key, so a cached answer is only
// ever returned for a request identical in everything a decision may
// depend on. Errors are never kept, nor a DENY caused by a dependency of
// the server being down (NO_BUNDLE, CONSENT_UNAVAILABLE,
// AGREEMENT_UNAVAILABLE, POLICY_ERROR, AUDIT_UNAVAILABLE): those clear up
// and must not outlive the outage. A cached answer is returned as a copy
// whose cacheTtl is the time it has left; its decisionId is the one of the
// decision the server recorded. A change on the server (a consent
// revoked, a new bundle) reaches a cached answer only when it expires: the
// bundle's cacheTtl, capped by [WithMaxTTL], is how stale an answer may
// be. [Client.Stats] counts hits, misses, calls and failures.
//
// A server that trusts the caller's clock (serve's trusted request time,
// for replays) decides at context.time; a caller that asks such a server
// about other instants must not enable the cache.
//
// # Coalescing
//
// With [WithBatchWindow] (off by default) Checks that miss the cache and
// arrive within the window of each other are sent as one BatchCheck of at
// most [WithMaxBatch] requests (1000, the server's limit). A batch is sent
// when its window ends or when it is full, whichever comes first. The
// window adds up to its length to the latency of every uncached Check,
// which is why it is off unless asked for: turn it on for callers that
// issue many concurrent Checks (a proxy deciding page entries, a busy
// gateway) and measure. When the server refuses a coalesced batch as
// invalid input (one bad request fails a whole BatchCheck), each request
// of the batch is asked again on its own, so one caller's bad request
// never denies another's.
//
// [Client.BatchCheck] answers a slice in order; requests found in the
// cache are answered from it and the rest are sent in BatchChecks of at
// most 1000.
package client
