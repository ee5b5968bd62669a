package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium or Chrome binary: $CHAPERONE_CHROMIUM, else
// Debian's chromium on the PATH (test/deps.sh installs it).
func chromium() (string, bool) {
	if p := os.Getenv("CHAPERONE_CHROMIUM"); p != "" {
		return p, true
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// TestConsoleInBrowser drives the web console in headless Chromium
// against a real `chaperone serve --console`: it opens every page, decides
// a break-glass request in the Playground, marks it reviewed in the review
// queue, uploads a candidate bundle for its diff, and after a clean
// shutdown finds the review, written as the signed-in caller, in the log
// `chaperone audit verify` accepts. Screenshots of every page go to
// $CHAPERONE_SCREENSHOTS (else the test's temporary directory).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	browserPath, ok := chromium()
	if !ok {
		t.Skip("chromium is not installed (test/deps.sh installs it: apt-get install chromium)")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	dir := t.TempDir()
	shots := os.Getenv("CHAPERONE_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(dir, "screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("chaperone %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	key := filepath.Join(dir, "ak")
	run("audit", "keygen", "-o", key)
	// A candidate bundle for review: the reference policies and one more
	// rule that forbids every emergency access.
	candDir := filepath.Join(dir, "candidate")
	if err := os.CopyFS(candDir, os.DirFS("../../policies")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(candDir, "freeze.cedar"), []byte("@id(\"freeze-emergency-access\")\n@reason(\"FROZEN\")\nforbid (principal, action, resource) when { context.purposeOfUse == \"ETREAT\" };\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cand := filepath.Join(dir, "candidate.tar.gz")
	run("bundle", "build", candDir, "-o", cand, "--skip-tests")

	auditFile := filepath.Join(dir, "audit.jsonl")
	cmd, base := startServe(t, "--console", "--bundle", "../../policies", "--consents", "../../policies/fixtures/consents",
		"--audit-file", auditFile, "--audit-key", key+".pem", "--audit-instance", "console-e2e")
	base = strings.Replace(base, "127.0.0.1", "localhost", 1) // as a person types it

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1366, 900), chromedp.UserDataDir(filepath.Join(dir, "profile")))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	// submit clicks sel and waits for the page it loads.
	submit := func(what, sel string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Every form control of every page has a label (or is a button).
	labelled := func(page string) {
		t.Helper()
		unlabelled, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea"))
			.filter(el => el.labels.length === 0 && !el.getAttribute("aria-label")).map(el => el.name || el.id)`))
		if err != nil || len(unlabelled) > 0 {
			t.Errorf("%s: controls without a label: %v (%v)", page, unlabelled, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		labelled(name)
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Playground: the break-glass example, decided against the active bundle.
	do("open the playground", chromedp.Navigate(base+"/console/playground?example=1"), chromedp.WaitVisible(chromedp.CSS("#decide-button")))
	// Keyboard: the first Tab reaches the skip link.
	do("tab", chromedp.KeyEvent("\t"))
	if focused, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.activeElement.className`)); err != nil || focused != "skip" {
		t.Errorf("first Tab focuses %q (%v), want the skip link", focused, err)
	}
	submit("decide", "#decide-button")
	do("decision shown", chromedp.WaitVisible(chromedp.CSS("#decision")))
	if got := text("#decision"); got != "ALLOW" {
		t.Fatalf("playground decision %q, want ALLOW", got)
	}
	if got := text("#trace"); !strings.Contains(got, "break-glass-emergency-access") {
		t.Errorf("trace %q names no break-glass policy", got)
	}
	if got := text("#obligations"); !strings.Contains(got, "BREAK_GLASS") {
		t.Errorf("obligations %q", got)
	}
	id, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("#result-section a[href*='record?id=']").textContent`))
	if err != nil || id == "" {
		t.Fatalf("decision id: %q %v", id, err)
	}
	do("scroll to the answer", chromedp.ScrollIntoView(chromedp.CSS("#result-section")))
	shot("playground")

	// Decisions: the chain verifies and the decision is listed.
	do("open decisions", chromedp.Navigate(base+"/console/decisions"), chromedp.WaitVisible(chromedp.CSS("#verify-status")))
	if got := text("#verify-status"); !strings.Contains(got, "intact") || !strings.Contains(got, "signatures checked") {
		t.Errorf("verify status %q", got)
	}
	do("search by patient", chromedp.SendKeys(chromedp.CSS("#patient"), "Patient/53"))
	submit("search", "#search-button")
	do("results", chromedp.WaitVisible(chromedp.CSS("#decisions-table")))
	if got := text("#decisions-table"); !strings.Contains(got, "AllergyIntolerance/all-1") {
		t.Errorf("search results %q", got)
	}
	shot("decisions")
	do("open the record", chromedp.Navigate(base+"/console/record?id="+id), chromedp.WaitVisible(chromedp.CSS("#record")))
	shot("record")

	// Break-glass review queue: the access is there; mark it reviewed.
	do("open the queue", chromedp.Navigate(base+"/console/break-glass"), chromedp.WaitVisible(chromedp.CSS("#note-"+id)))
	shot("break-glass")
	do("write a note", chromedp.SendKeys(chromedp.CSS("#note-"+id), "justified: trauma bay, attending confirmed"))
	submit("mark reviewed", "#note-"+id+" ~ .actions button")
	do("notice", chromedp.WaitVisible(chromedp.CSS(".notice")))
	if got := text(".notice"); !strings.Contains(got, id) {
		t.Errorf("notice %q", got)
	}
	if got := text("main"); !strings.Contains(got, "No unreviewed break-glass accesses") {
		t.Errorf("the queue still lists the reviewed access: %q", got)
	}

	// Patient view: the opt-out consent in plain words and the disclosure.
	do("open the patient view", chromedp.Navigate(base+"/console/patient"), chromedp.SendKeys(chromedp.CSS("#patient"), "Patient/53"))
	submit("show the patient", "#patient-button")
	do("disclosures", chromedp.WaitVisible(chromedp.CSS("#disclosures-table")))
	if got := text("main"); !strings.Contains(got, "deny-53") || !strings.Contains(got, "Denies") {
		t.Errorf("patient view %q", got)
	}
	shot("patient")

	// Bundle: status, then the candidate's decision impact.
	do("open the bundle page", chromedp.Navigate(base+"/console/bundle"), chromedp.WaitVisible(chromedp.CSS("#bundle-status")),
		chromedp.SetUploadFiles(chromedp.CSS("#bundle-file"), []string{cand}))
	submit("compare", "#diff-button")
	do("diff report", chromedp.WaitVisible(chromedp.CSS("#diff-report")))
	if got := text("#diff-report"); !strings.Contains(got, "ALLOW → DENY") || !strings.Contains(got, "+freeze-emergency-access") {
		t.Errorf("diff report %q", got)
	}
	shot("bundle")
	cancelBrowser()

	// A clean shutdown closes the log; verify it with the key and find the
	// review, by the signed-in caller, of the decision the browser made.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Process.Wait(); err != nil {
		t.Fatal(err)
	}
	if out := run("audit", "verify", auditFile, "--pub", key+".pub.pem"); !strings.Contains(out, "intact") {
		t.Fatalf("verify: %s", out)
	}
	var accesses []struct {
		DecisionID string `json:"decisionId"`
		Reviews    []struct{ By, Note string }
	}
	if err := json.Unmarshal([]byte(run("audit", "break-glass", "--file", auditFile, "--format", "json")), &accesses); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range accesses {
		for _, r := range a.Reviews {
			if a.DecisionID == id && r.By == "anonymous-loopback" && r.Note == "justified: trauma bay, attending confirmed" {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no review of %s in the verified log: %+v", id, accesses)
	}
	t.Logf("screenshots in %s", shots)
}
