package server

import (
	"context"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

// Doors are other protocols for the same decisions (AuthZEN, for one): plain
// HTTP handlers that map their request to a CheckRequest and decide it
// through [Server.Decide], so every door validates, checks the clock, asks
// the engine, audits and logs exactly as DecisionService/Check does.

// Route is one HTTP route of a door.
type Route struct {
	// Pattern is an http.ServeMux pattern, e.g. "POST /access/v1/evaluation".
	Pattern string
	// Procedure is the name the [Guard] authorizes, rate limits, counts and
	// logs requests to this route by, as if it were an RPC method:
	// "/pkg.Service/Method". A callers file grants it like any procedure
	// ("pkg.Service" or "pkg.Service/Method").
	Procedure string
	// Handler serves the route.
	Handler http.Handler
	// Batch routes carry several decisions in one request: the guard only
	// checks that the caller has a token left, and the handler pays for
	// every decision with [Server.ChargeDecisions] once it has read the
	// body (as BatchCheck does).
	Batch bool
	// EndUserToken routes carry the end user's token in Authorization (a
	// forward-auth sub-request does): the guard then takes the caller's own
	// bearer token from [HeaderCallerAuthorization] instead, or identifies
	// the caller by its client certificate alone.
	EndUserToken bool
}

// HeaderCallerAuthorization carries the caller's bearer token on an
// [Route].EndUserToken route ("Bearer …", as Authorization would).
const HeaderCallerAuthorization = "X-Chaperone-Authorization"

// WithDoor mounts a door to decisions: New calls routes once with the
// server itself (whose [Server.Decide] the door decides through) and serves
// the routes it returns beside the services.
func WithDoor(routes func(*Server) []Route) Option {
	return func(s *Server) { s.doors = append(s.doors, routes) }
}

// doorRoute is what the guard learns about a request to a door route.
type doorRoute struct {
	procedure    string
	batch        bool
	endUserToken bool
}

type doorRouteKey struct{}

func doorRouteFrom(ctx context.Context) (doorRoute, bool) {
	r, ok := ctx.Value(doorRouteKey{}).(doorRoute)
	return r, ok
}

// mountDoors serves the routes of every door and remembers their
// procedures by path.
func (s *Server) mountDoors() {
	for _, door := range s.doors {
		for _, r := range door(s) {
			s.mux.Handle(r.Pattern, r.Handler)
			path := r.Pattern
			if _, p, ok := strings.Cut(r.Pattern, " "); ok {
				path = p
			}
			if s.routes == nil {
				s.routes = map[string]doorRoute{}
			}
			s.routes[path] = doorRoute{procedure: r.Procedure, batch: r.Batch, endUserToken: r.EndUserToken}
			if s.metrics != nil {
				s.metrics.known.Store(r.Procedure, r.Procedure)
			}
		}
	}
}

// Decide decides one request exactly as DecisionService/Check does: it
// validates req against the API's rules, checks its context.time against
// the server's clock, asks the engine, takes the audit record (attributed to
// the caller of ctx; a record that cannot be kept turns the answer into DENY
// AUDIT_UNAVAILABLE), counts the decision in the metrics and logs it. It is
// for doors ([WithDoor]); ctx must be the context of a request that passed
// the [Guard].
//
// An invalid request is not decided and not recorded: the error is a
// [*validation.Error] naming the fields (in CheckRequest's JSON names; a
// context.time too far from the server's clock is one too). Any other error
// means the rules could not be checked.
//
// amend, when not nil, is given the engine's answer and returns the answer
// to record and return instead (a door whose client cannot carry out an
// obligation turns an ALLOW into a DENY); it must return a new message, not
// modify the one it is given.
func (s *Server) Decide(ctx context.Context, req *chaperonev1.CheckRequest, amend func(*chaperonev1.CheckResponse) *chaperonev1.CheckResponse) (*chaperonev1.CheckResponse, error) {
	if err := s.validator.Validate(req); err != nil {
		return nil, err
	}
	if msg, bad := s.clock.skewed(req); bad {
		return nil, &validation.Error{Violations: []validation.Violation{{Field: "context.time", Message: msg}}}
	}
	resp := s.decisions.decide(ctx, CallerName(ctx), req, amend)
	if s.metrics != nil {
		s.metrics.countDecision(resp)
	}
	return resp, nil
}

// ChargeDecisions takes the cost of n decisions from the rate limit of the
// caller of ctx, for a door request that learns how many decisions it
// carries from its body. On a [Route] marked Batch it takes all n (the guard
// took none); on any other route n-1 (the guard took one). It returns nil
// when there is no limit (or no [Guard]), or a [*callers.RateLimitError] (answer it with
// HTTP 429 and its RetryAfter) when the caller has not enough left.
func (s *Server) ChargeDecisions(ctx context.Context, n int) error {
	ri := requestInfoFrom(ctx)
	if ri == nil || ri.guard == nil || ri.guard.limiter == nil || ri.caller == nil || ri.limitKey == "" {
		return nil
	}
	cost := n
	if !ri.deferCost {
		cost--
	}
	if cost <= 0 {
		return nil
	}
	g := ri.guard
	if err := g.limiter.AllowN(ri.limitKey, cost, g.authz.RateFor(ri.caller)); err != nil {
		if g.metrics != nil {
			g.metrics.refused(connect.CodeResourceExhausted)
		}
		return err
	}
	return nil
}

// WithGRPCDoor mounts a door that is an RPC service of another protocol
// (Envoy's ext_authz, for one) like a service: listed by reflection and
// health, authorized, rate limited and counted by its procedure names. New
// calls handler once with the server itself, whose [Server.Decide] the
// door decides through, and mounts the Connect handler it returns.
func WithGRPCDoor(name string, handler func(*Server) func(opts ...connect.HandlerOption) (string, http.Handler)) Option {
	return func(s *Server) {
		s.mounts = append(s.mounts, mount{name, func(opts ...connect.HandlerOption) (string, http.Handler) {
			return handler(s)(opts...)
		}})
	}
}
