package server

import (
	"context"
	"encoding/hex"
	"math/rand/v2"

	"connectrpc.com/connect"

	"github.com/chaperone-pdp/chaperone/callers"
)

// Correlation headers. A request's correlation id is its X-Request-Id when
// that is well formed, else the trace id of its W3C traceparent, else a new
// random id; it is returned in the X-Request-Id response header.
const (
	HeaderRequestID   = "X-Request-Id"
	HeaderTraceparent = "Traceparent"
)

// maxRequestIDLen bounds a caller's X-Request-Id; longer ids are replaced.
const maxRequestIDLen = 128

// requestInfo is what the guard learns about one request. It travels in the
// request context (one allocation per request) and is filled in as the
// request passes the guard and the Connect interceptors.
type requestInfo struct {
	correlationID string
	caller        *callers.Caller
	guard         *Guard // that let the request in, for doors' [Server.ChargeDecisions]
	limitKey      string // the caller's rate limit bucket, when limited
	deferCost     bool   // the request's tokens are taken once its body is read
	procedure     string // "/pkg.Service/Method", or "" for non-RPC paths
	code          connect.Code
	codeSet       bool
}

type requestInfoKey struct{}

func withRequestInfo(ctx context.Context, ri *requestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

func requestInfoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return ri
}

// CorrelationID returns the correlation id of the request ctx belongs to,
// or "" outside a request that passed the [Guard]. Audit records and
// decision log lines carry it so that one request can be followed from the
// gateway through Chaperone.
func CorrelationID(ctx context.Context) string {
	if ri := requestInfoFrom(ctx); ri != nil {
		return ri.correlationID
	}
	return ""
}

// ContextWithCorrelationID returns ctx carrying id as its correlation id,
// for callers that decide outside an HTTP request (tests, the CLI).
func ContextWithCorrelationID(ctx context.Context, id string) context.Context {
	return withRequestInfo(ctx, &requestInfo{correlationID: id})
}

// correlationID picks the correlation id of a request from its headers.
func correlationID(requestID, traceparent string) string {
	if validRequestID(requestID) {
		return requestID
	}
	if id, ok := traceID(traceparent); ok {
		return id
	}
	return newCorrelationID()
}

// validRequestID accepts 1 to 128 characters from a conservative set, so a
// caller's id can go into logs and headers as it is.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=' || c == '@':
		default:
			return false
		}
	}
	return true
}

// traceID returns the trace id of a W3C traceparent header
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>").
func traceID(tp string) (string, bool) {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return "", false
	}
	if tp[:2] == "ff" || !isLowerHex(tp[:2]) || !isLowerHex(tp[53:55]) || !isLowerHex(tp[36:52]) {
		return "", false
	}
	if len(tp) > 55 && (tp[:2] == "00" || tp[55] != '-') {
		return "", false
	}
	id := tp[3:35]
	if !isLowerHex(id) || id == "00000000000000000000000000000000" {
		return "", false
	}
	return id, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// newCorrelationID returns 32 random hex digits. Correlation ids are
// labels, not secrets, so the runtime's fast generator is enough.
func newCorrelationID() string {
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (8 * i))
		b[8+i] = byte(lo >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}
