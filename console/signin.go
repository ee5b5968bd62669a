package console

import (
	"net/http"
	"regexp"
	"strings"
)

// Signing in with a bearer token. A browser cannot put a token in the
// Authorization header of a page it navigates to, so with token
// authentication (serve --jwks) the console offers a sign-in page: the
// person pastes a token their identity provider issued, the console keeps
// it in an HttpOnly, SameSite=Strict cookie scoped to /console/, and
// [BearerCookie] turns the cookie back into an Authorization header for
// console requests only, before the guard verifies it as it verifies any
// token. The API itself never reads the cookie, so no API call can be
// forged from another site with it.

// SignInPath is the sign-in page, served without authentication (list it
// in the guard's public paths).
const SignInPath = Prefix + "sign-in"

const tokenCookie = "chaperone_console_token"

// jwtShape is three base64url parts: what the sign-in form accepts (the
// guard verifies the rest).
var jwtShape = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// BearerCookie is middleware for servers that authenticate callers with
// bearer tokens; install it outside the guard. For a console request
// without an Authorization header it sends the signed-in token, and it
// sends a browser without one to the sign-in page.
func BearerCookie(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, Prefix) || r.URL.Path == SignInPath || r.Header.Get("Authorization") != "" {
			next.ServeHTTP(w, r)
			return
		}
		ck, err := r.Cookie(tokenCookie)
		if err != nil || !jwtShape.MatchString(ck.Value) {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
				http.Redirect(w, r, SignInPath, http.StatusSeeOther)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+ck.Value)
		next.ServeHTTP(w, r)
	})
}

// signIn serves the sign-in page (GET) and keeps a pasted token (POST),
// and signs out (POST with signOut).
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	v := view{Title: "Sign in"}
	if r.Method == http.MethodPost {
		if !sameOrigin(r) {
			c.render(w, r, http.StatusForbidden, "signin", view{Title: "Sign in", Error: "This form came from another site."})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if r.PostFormValue("signOut") != "" {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
			v.Notice = "Signed out."
			c.render(w, r, http.StatusOK, "signin", v)
			return
		}
		tok := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(r.PostFormValue("token")), "Bearer "))
		if !jwtShape.MatchString(tok) {
			v.Error = "That is not a bearer token (a JWT: three parts separated by dots)."
			c.render(w, r, http.StatusBadRequest, "signin", v)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: Prefix, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, Prefix+"decisions", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "signin", v)
}
