// Package server exposes Chaperone over Connect, gRPC and gRPC-Web on one
// HTTP handler ([New]): the DecisionService (Check, BatchCheck), the standard
// gRPC health service, gRPC reflection and GET /healthz (200 when a policy
// bundle is active, 503 otherwise).
//
// Every request message is checked against the protovalidate rules of the
// .proto files before a handler sees it; a message that breaks one is
// answered with Connect code invalid_argument naming the field. Connect
// codes appear only in this package: domain packages return plain errors and
// the handlers translate them here, logging the detail and giving callers a
// message without PHI or internals.
package server
