package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CORS lets web pages of named origins call the services from a browser
// (Connect, gRPC-Web): it answers their preflight requests and marks the
// answers to their requests readable. Origins are exact
// (scheme://host[:port], as a browser sends them): no wildcard, no
// pattern, so no page of another origin can read an answer. A request from
// any other origin gets no CORS header (its browser withholds the answer)
// and its preflight is refused, so it never sends the request.
//
// Credentials are allowed (Access-Control-Allow-Credentials: true) for
// the named origins only, always with the exact origin echoed (never "*"),
// so a page there may send a bearer token or present a client
// certificate; the guard authenticates and authorizes the request as any
// other. Install it outermost ([WithMiddleware] before the guard's): a
// preflight carries no credentials and is answered here.
type CORS struct {
	origins map[string]bool
	maxAge  string
}

// corsAllowHeaders are the request headers a browser client may send:
// those of the Connect, gRPC-Web and gRPC-Web-text protocols, and the
// server's own.
var corsAllowHeaders = []string{
	"Authorization", "Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Accept-Encoding",
	"Connect-Content-Encoding", "Grpc-Timeout", "Grpc-Accept-Encoding", "Grpc-Encoding", "X-Grpc-Web", "X-User-Agent",
	HeaderRequestID, HeaderTraceparent, "Tracestate", HeaderCallerAuthorization,
}

// corsExposeHeaders are the answer headers a browser client may read.
var corsExposeHeaders = []string{
	"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Content-Encoding", "Connect-Content-Encoding",
	HeaderRequestID, "Retry-After",
}

// ErrCORSOrigin is an origin the CORS configuration refuses.
var ErrCORSOrigin = errors.New("cors origin")

// DefaultCORSMaxAge is how long a browser may cache a preflight answer.
const DefaultCORSMaxAge = 2 * time.Hour

// NewCORS returns the CORS middleware for origins, each exactly
// scheme://host[:port] with scheme http or https, in lower case, without
// path, query, user or trailing slash; "*" and "null" are refused.
func NewCORS(origins []string) (*CORS, error) {
	c := &CORS{origins: map[string]bool{}, maxAge: strconv.Itoa(int(DefaultCORSMaxAge / time.Second))}
	for _, o := range origins {
		if err := checkOrigin(o); err != nil {
			return nil, err
		}
		c.origins[o] = true
	}
	return c, nil
}

func checkOrigin(o string) error {
	u, err := url.Parse(o)
	switch {
	case o == "*" || o == "null" || strings.ContainsAny(o, "*?#"):
		return fmt.Errorf("%w %q: name an exact origin, scheme://host[:port]", ErrCORSOrigin, o)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "":
		return fmt.Errorf("%w %q: want scheme://host[:port] (http or https, no path, no trailing slash)", ErrCORSOrigin, o)
	case o != strings.ToLower(o):
		return fmt.Errorf("%w %q: write it in lower case, as browsers send it", ErrCORSOrigin, o)
	case (u.Scheme == "http" && u.Port() == "80") || (u.Scheme == "https" && u.Port() == "443"):
		return fmt.Errorf("%w %q: leave out the default port, as browsers do", ErrCORSOrigin, o)
	}
	return nil
}

// Origins lists the allowed origins, sorted.
func (c *CORS) Origins() []string {
	out := make([]string, 0, len(c.origins))
	for o := range c.origins {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Middleware wraps next.
func (c *CORS) Middleware(next http.Handler) http.Handler {
	allow := strings.Join(corsAllowHeaders, ", ")
	expose := strings.Join(corsExposeHeaders, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin, hasOrigin := r.Header["Origin"]
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if !hasOrigin {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		ok := len(origin) == 1 && c.origins[origin[0]]
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			method := r.Header.Get("Access-Control-Request-Method")
			if !ok || (method != http.MethodPost && method != http.MethodGet) || !allowedHeaders(r.Header.Values("Access-Control-Request-Headers")) {
				// No CORS header: the browser does not send the request.
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin[0])
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", allow)
			h.Set("Access-Control-Max-Age", c.maxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", origin[0])
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", expose)
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHeaders reports whether every header a preflight asks for may be
// sent.
func allowedHeaders(values []string) bool {
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !slices.ContainsFunc(corsAllowHeaders, func(h string) bool { return strings.EqualFold(h, name) }) {
				return false
			}
		}
	}
	return true
}
