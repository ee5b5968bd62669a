// Package callers says who sent a request to Chaperone and what that caller
// may do, without any knowledge of HTTP status codes or Connect codes (the
// server's guard maps its errors to those).
//
//   - [Caller] is an authenticated caller: the identities of a verified
//     client certificate ([FromCertificate], URI SANs and DNS SANs kept
//     apart) and the claims of a verified bearer token.
//   - [JWTVerifier] verifies bearer tokens (asymmetric algorithms only, a
//     bounded lifetime, no critical headers, a non-empty sub) against a [JWKS], a key
//     set fetched and refreshed by jwx's jwk.Cache; verified tokens are
//     remembered in an LRU cache. On every Verify, cached or not, a token
//     is checked against the revocation list ([RevocationList], by jti and
//     by the token's SHA-256; [JWTConfig].RequireJTI refuses tokens
//     without a jti) and, when configured, against the issuer's RFC 7662
//     introspection endpoint ([Introspector], answers cached per token
//     for at most its remaining lifetime). Both fail closed.
//   - [Authorizer] compiles the callers file ([AuthzConfig]) and answers
//     whether a caller may call a procedure, by its full name.
//   - [RateLimiter] keeps a token bucket per caller ([LimitKey]: per remote
//     address for anonymous callers), in a bounded LRU; a request costs one
//     token per decision it asks for.
//
// Errors match [ErrUnauthenticated] ([*TokenError]) or [ErrPermissionDenied]
// ([*DeniedError]), or are a [*RateLimitError].
package callers
