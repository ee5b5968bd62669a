// Package doors holds the test that one request gets one decision through
// all four doors of a server: the Connect Check RPC, Envoy ext_authz,
// forward-auth and OpenID AuthZEN. It has no code of its own.
package doors
