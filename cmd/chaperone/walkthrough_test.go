package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rogpeppe/go-internal/txtar"
)

// TestFirstPolicyWalkthrough runs the steps of docs/first-policy.md
// (testdata/walkthrough/first-policy.txtar) against the real command: the
// files a reader writes, chaperone test, a misspelling the static checks
// catch, check, bundle build, serve and a Check over HTTP, and the rule
// again in Rego.
func TestFirstPolicyWalkthrough(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir: "testdata/walkthrough",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"serve":   serveCmd,
			"stop":    stopCmd,
			"post":    postCmd,
			"replace": replaceCmd,
		},
	})
}

// serveCmd starts `chaperone serve ARGS --addr 127.0.0.1:0` in the work
// directory, waits for the line that says where it listens (no polling:
// it reads the server's stderr), sets $URL, and stops the server with
// SIGTERM when the script ends.
func serveCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! serve")
	}
	bin, err := exec.LookPath("chaperone")
	ts.Check(err)
	cmd := exec.Command(bin, append(append([]string{"serve"}, args...), "--addr", "127.0.0.1:0")...)
	cmd.Dir = ts.MkAbs(".")
	stderr, err := cmd.StderrPipe()
	ts.Check(err)
	ts.Check(cmd.Start())
	// A server that never says where it listens is killed, which ends
	// the read below.
	stuck := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	lines := bufio.NewScanner(stderr)
	listening := regexp.MustCompile(`^chaperone listening on (http://\S+)$`)
	url := ""
	for url == "" && lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if m := listening.FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
		}
	}
	stuck.Stop()
	if url == "" {
		cmd.Wait()
		ts.Fatalf("serve did not listen:\n%s", log.String())
	}
	done := make(chan struct{})
	go func() { // keep draining, so the server never blocks on its log
		defer close(done)
		for lines.Scan() {
			mu.Lock()
			log.WriteString(lines.Text() + "\n")
			mu.Unlock()
		}
	}()
	ts.Setenv("URL", url)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			<-done
			if err := cmd.Wait(); err != nil {
				mu.Lock()
				ts.Logf("serve: %v\n%s", err, log.String())
				mu.Unlock()
			}
		})
	}
	servers.Store(ts, stop)
	ts.Defer(stop)
}

// servers holds the stop function of each script's server.
var servers sync.Map // *testscript.TestScript → func()

// stopCmd stops the script's server as Ctrl-C would (SIGTERM: the server
// drains its audit queue and closes the log) and waits for it to exit.
func stopCmd(ts *testscript.TestScript, neg bool, args []string) {
	stop, ok := servers.LoadAndDelete(ts)
	if neg || len(args) != 0 || !ok {
		ts.Fatalf("usage: stop, after serve")
	}
	stop.(func())()
}

// postCmd POSTs FILE as JSON to $URL PATH and writes the answer to stdout;
// an answer other than 200 fails unless negated.
func postCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: post PATH FILE")
	}
	f, err := os.Open(ts.MkAbs(args[1]))
	ts.Check(err)
	defer f.Close()
	resp, err := http.Post(ts.Getenv("URL")+args[0], "application/json", f)
	ts.Check(err)
	defer resp.Body.Close()
	var body strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&body)
	ts.Check(err)
	fmt.Fprint(ts.Stdout(), body.String())
	if (resp.StatusCode == http.StatusOK) == neg {
		ts.Fatalf("POST %s: %s\n%s", args[0], resp.Status, body.String())
	}
}

// replaceCmd replaces OLD by NEW in FILE (once at least), as a reader
// editing a file would.
func replaceCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	file := ts.MkAbs(args[0])
	data, err := os.ReadFile(file)
	ts.Check(err)
	if !strings.Contains(string(data), args[1]) {
		ts.Fatalf("%s does not hold %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(file, []byte(strings.ReplaceAll(string(data), args[1], args[2])), 0o644))
}

// TestFirstPolicyDocMatchesWalkthrough: docs/first-policy.md shows every
// file of the walk-through script verbatim, every command it runs, and an
// output line each of its stdout/stderr patterns matches, so what the
// reader follows is what the test runs.
func TestFirstPolicyDocMatchesWalkthrough(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "first-policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := txtar.ParseFile("testdata/walkthrough/first-policy.txtar")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for _, f := range a.Files {
		if !strings.Contains(text, "```") || !strings.Contains(text, "\n"+string(f.Data)+"```") {
			t.Errorf("docs/first-policy.md does not show %s as the walk-through writes it:\n%s", f.Name, f.Data)
		}
		if !strings.Contains(text, f.Name) {
			t.Errorf("docs/first-policy.md does not name %s", f.Name)
		}
	}
	pattern := regexp.MustCompile(`^(?:! )?(stdout|stderr) '(.*)'$`)
	for _, line := range strings.Split(string(a.Comment), "\n") {
		var want string
		switch fields := scriptArgs(line); {
		case len(fields) == 0 || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "exec chaperone ") || strings.HasPrefix(line, "! exec chaperone "):
			want = "chaperone " + strings.SplitN(line, "exec chaperone ", 2)[1]
		case fields[0] == "serve":
			want = "chaperone " + line
		case fields[0] == "post":
			want = fields[1] + " -H 'Content-Type: application/json' -d @" + fields[2]
		case fields[0] == "cp":
			want = line
		case fields[0] == "replace":
			want = "`" + fields[3] + "`"
			if strings.Contains(fields[3], "purposeOfUse") {
				continue // the fix of the misspelling
			}
		case fields[0] == "stop":
			want = "Ctrl-C"
		case fields[0] == "mkdir":
			want = line
		case pattern.MatchString(line):
			m := pattern.FindStringSubmatch(line)
			if !regexp.MustCompile("(?m)" + m[2]).MatchString(text) {
				t.Errorf("docs/first-policy.md shows no output that %s matches: %s", m[1], m[2])
			}
			continue
		default:
			t.Fatalf("the walk-through has a line this test does not know: %q", line)
		}
		if !strings.Contains(text, want) {
			t.Errorf("docs/first-policy.md does not show %q", want)
		}
	}
}

// scriptArgs splits a script line into its words as testscript does:
// spaces separate, single quotes group words (inside them, two single
// quotes stand for one).
func scriptArgs(line string) []string {
	var (
		out    []string
		word   strings.Builder
		quoted bool
		inWord bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' && quoted && i+1 < len(line) && line[i+1] == '\'':
			word.WriteByte('\'')
			i++
		case c == '\'':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				out = append(out, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, word.String())
	}
	return out
}
