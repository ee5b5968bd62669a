// Package h2c is a small HTTP/2 server for cleartext connections (prior
// knowledge, RFC 9113 §3.3): the transport of gRPC clients, Envoy's
// ext_authz filter among them. It serves any http.Handler; Chaperone
// gives it the same handler as its HTTP/1.1 and TLS listeners, so every
// service, door, interceptor, caller check, rate limit and audit record
// is the same whichever transport a request came by.
//
// # Why not Go's HTTP/2 server
//
// A unary gRPC call is a few hundred bytes each way. Go's HTTP/2 server
// (net/http) runs every connection as a frame-reading goroutine, a serve
// loop and a goroutine per write, handing each frame between them over
// channels, and flushes the answer's HEADERS, DATA and trailers with a
// write each. Measured as the server's CPU per decision, an Envoy
// ext_authz Check over it cost 1.5–1.9× a Connect JSON Check over
// HTTP/1.1, although in process the two handlers cost the same: the
// difference was the transport.
//
// Here one goroutine per connection reads frames (from a buffered
// reader: the frames that arrived together are read with one system
// call) and starts a stream's handler on a goroutine whose stack is
// already grown once no further frame is buffered, so a unary request's
// body is whole when the handler reads it. The handler's answer is held
// until it flushes or returns, then encoded and queued by the handler's
// goroutine itself: HEADERS, DATA and trailers leave in one write, and
// answers that are ready while another goroutine writes leave with that
// goroutine's next write.
//
// Measured with bench/doors.sh against Go's HTTP/2 server in the same
// run (same build, serve --h2c-server net/http), server CPU per decision
// on a loaded 2-core machine: an ext_authz Check 119-137 µs → 92-94 µs
// (1.75-1.80× a Connect JSON Check, from 2.27-2.75×), a gRPC Check
// 117-126 µs → 72-78 µs (1.45-1.49× Connect protobuf over HTTP/1.1, from
// 2.09-2.33×). Reading a request and writing its answer now cost about
// 28 µs against HTTP/1.1's 20 µs; the rest of the gap is the handlers'.
//
// # What it implements
//
// The connection preface and SETTINGS (with ACK), PING, flow control in
// both directions (the server's windows are returned once half is used,
// so a small request costs no WINDOW_UPDATE), RST_STREAM both ways,
// GOAWAY (on a connection error, from the client, and on
// [Server.Shutdown], which lets the streams begun finish), CONTINUATION,
// padding, SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM beyond),
// header list size (431 beyond), frame size, request body timeouts and an
// idle timeout. Malformed requests (RFC 9113 §8.1.1) are stream errors;
// protocol violations are connection errors: never a panic. It does not
// implement server push, the CONNECT method, extended CONNECT, priority
// (frames are parsed and ignored, as RFC 9113 allows) or TLS: TLS
// connections, and their ALPN "h2", stay with Go's server.
package h2c
