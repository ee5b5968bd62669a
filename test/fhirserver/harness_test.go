package fhirserver_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// npmCI installs the FHIR server's packages from the lockfile once per
// test binary.
var npmCI = sync.OnceValue(func() error {
	if _, err := os.Stat("node_modules/@medplum/fhir-router/package.json"); err == nil {
		return nil
	}
	out, err := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error").CombinedOutput()
	if err != nil {
		return errors.New(string(out))
	}
	return nil
})

// buildBinary builds cmd/chaperone once per test binary.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "chaperone-fhirserver-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "chaperone")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/chaperone").CombinedOutput()
	if err != nil {
		return "", errors.New(string(out))
	}
	return bin, nil
})

func needNode(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the FHIR server test needs Node.js 20.19 or later and npm (test/deps.sh installs them)", tool)
		}
	}
	out, err := exec.Command("node", "-p", "process.versions.node").Output()
	var major, minor int
	if _, perr := fmt.Sscanf(strings.TrimSpace(string(out)), "%d.%d", &major, &minor); err != nil || perr != nil || major < 20 || major == 20 && minor < 19 {
		t.Skipf("node %s: the FHIR server test needs Node.js 20.19 or later (@medplum/fhir-router 4.5.2)", strings.TrimSpace(string(out)))
	}
	if err := npmCI(); err != nil {
		t.Fatalf("npm ci: %v", err)
	}
}

// start runs a process and returns the first submatch of listen in its
// output (stdout or stderr), killing it at the end of the test.
func start(t testing.TB, listen *regexp.Regexp, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait(); _ = pw.Close() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if m := listen.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
	}()
	select {
	case a := <-found:
		return a
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not start within 90s", name)
		return ""
	}
}

// stack is a FHIR server, a PDP and the proxy between them.
type stack struct {
	upstream, pdp, proxy string
	auditFile            string
	key                  jwk.Key
}

const (
	tenantSystem = "https://chaperone.test/tenant"
	issuer       = "https://auth.fhirserver.test"
	audience     = "https://fhir.fhirserver.test"
)

func startStack(t testing.TB) *stack {
	t.Helper()
	needNode(t)
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	dir := t.TempDir()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, "u1")
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	gw := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(gw, []byte(`fhirBase: /fhir
tokens:
  jwks: keys.json
  issuer: `+issuer+`
  audience: `+audience+`
claims:
  id: fhirUser
  roles: roles
  organization: org
  launchPatient: patient
purposeOfUse:
  header: X-Purpose-Of-Use
  default: TREAT
resourcePhase: proxy
tenantTagSystem: `+tenantSystem+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{key: priv, auditFile: filepath.Join(dir, "audit.jsonl")}
	s.upstream = start(t, regexp.MustCompile(`listening on (http://\S+)`), "node", "server.mjs")
	s.pdp = start(t, regexp.MustCompile(`chaperone listening on (http://\S+)`), bin, "serve", "--addr", "127.0.0.1:0", "--audit-file", s.auditFile)
	s.proxy = start(t, regexp.MustCompile(`proxy listening on (http://\S+)`), bin, "proxy", "--addr", "127.0.0.1:0",
		"--upstream", s.upstream, "--pdp", s.pdp, "--gateway", gw, "--pdp-timeout", "10s", "--device-trust", "managed")
	s.proxy += "/fhir"
	return s
}

// token signs an end-user token with claims.
func (s *stack) token(t testing.TB, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	b := jwt.NewBuilder().Subject("u").Issuer(issuer).Audience([]string{audience}).
		IssuedAt(now.Add(-time.Minute)).Expiration(now.Add(time.Hour))
	for k, v := range claims {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), s.key))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + string(signed)
}
