package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/chaperone-pdp/chaperone/callers"
)

// CSRF protection of every write: a double-submit token bound to the
// caller. The browser holds a random nonce in an HttpOnly, SameSite=Strict
// cookie scoped to the console; every form carries HMAC(key, nonce,
// caller id) under a key that lives only in this process. A write needs
// both, matching, and an Origin header (or, when a browser sends none, a
// Referer) naming the console's own origin. A page of another site can
// neither read the cookie nor compute the token, and a token leaked from
// one caller's page is worthless to another caller.

const (
	csrfCookie = "chaperone_console_csrf"
	csrfField  = "csrf"
)

// Errors of the CSRF check.
var (
	errCSRFOrigin = errors.New("csrf: origin is not the console's")
	errCSRFToken  = errors.New("csrf: missing or wrong token")
)

type csrf struct {
	key []byte
}

func newCSRF() (*csrf, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("console: csrf key: %w", err)
	}
	return &csrf{key: key}, nil
}

func (c *csrf) mac(nonce, callerID string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(callerID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// token returns the form token of r's caller, setting the nonce cookie
// when the browser has none.
func (c *csrf) token(w http.ResponseWriter, r *http.Request, caller *callers.Caller) string {
	nonce := ""
	if ck, err := r.Cookie(csrfCookie); err == nil && validNonce(ck.Value) {
		nonce = ck.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		nonce = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{
			Name: csrfCookie, Value: nonce, Path: Prefix,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
		})
	}
	return c.mac(nonce, caller.ID)
}

func validNonce(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// check accepts a write from the console's own pages only.
func (c *csrf) check(r *http.Request, caller *callers.Caller) error {
	if !sameOrigin(r) {
		return errCSRFOrigin
	}
	ck, err := r.Cookie(csrfCookie)
	if err != nil || !validNonce(ck.Value) {
		return errCSRFToken
	}
	var got string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxUploadBytes); err != nil {
			return fmt.Errorf("%w: %v", errCSRFToken, err)
		}
	} else if err := r.ParseForm(); err != nil {
		return fmt.Errorf("%w: %v", errCSRFToken, err)
	}
	got = r.PostFormValue(csrfField)
	want := c.mac(ck.Value, caller.ID)
	if !hmac.Equal([]byte(got), []byte(want)) {
		return errCSRFToken
	}
	return nil
}

// sameOrigin reports whether r's Origin (else its Referer) is the origin
// the request was sent to: its scheme and Host.
func sameOrigin(r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	want := scheme + "://" + r.Host
	if o, ok := r.Header["Origin"]; ok {
		return len(o) == 1 && strings.EqualFold(o[0], want)
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return false
	}
	u, err := url.Parse(ref)
	return err == nil && strings.EqualFold(u.Scheme+"://"+u.Host, want)
}
