package console

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chaperone-pdp/chaperone/bundles"
	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/engine"
	"github.com/chaperone-pdp/chaperone/policytest"
	"github.com/chaperone-pdp/chaperone/validation"
)

type bundleData struct {
	Status bundles.Status
	Files  []string
	Diff   *diffView
}

type diffView struct {
	Report       *bundles.Report
	Candidate    string
	Verification string
	RequestsFrom string
}

// bundle serves the Bundle page: the active bundle and the form to upload
// a candidate for a decision-impact diff.
func (c *Console) bundle(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "bundle", ProcBundleStatus) {
		return
	}
	d := c.bundleStatus()
	c.render(w, r, http.StatusOK, "bundle", view{Title: "Bundle", Nav: "bundle", Data: d})
}

func (c *Console) bundleStatus() *bundleData {
	d := &bundleData{Status: c.cfg.Bundles.Status()}
	if a := c.cfg.Bundles.Archive(); a != nil {
		d.Files = a.Paths()
	}
	return d
}

// bundleDiff replays requests against the active bundle and an uploaded
// candidate (bundle build's .tar.gz) and shows what changes. The candidate
// is compiled here and never activated.
func (c *Console) bundleDiff(w http.ResponseWriter, r *http.Request) {
	if !c.guard(w, r, "bundle", ProcBundleStatus) {
		return
	}
	d := c.bundleStatus()
	v := view{Title: "Bundle", Nav: "bundle", Data: d}
	fail := func(status int, msg string) {
		v.Error = msg
		c.render(w, r, status, "bundle", v)
	}
	active := c.cfg.Bundles.Archive()
	if active == nil {
		fail(http.StatusConflict, "No bundle is active.")
		return
	}
	f, hdr, err := r.FormFile("bundle")
	if err != nil {
		fail(http.StatusBadRequest, "Choose a candidate bundle file (.tar.gz, from chaperone bundle build).")
		return
	}
	cand, err := bundles.ReadArchive(f)
	f.Close()
	if err != nil {
		fail(http.StatusBadRequest, "The candidate is not a bundle: "+err.Error())
		return
	}
	dv := &diffView{Candidate: filepath.Base(hdr.Filename)}
	if cand.Built() {
		if _, err := bundles.Verify(cand, bundles.VerifyOptions{}); err != nil {
			fail(http.StatusBadRequest, "The candidate does not verify: "+err.Error())
			return
		}
		dv.Verification = "file digests match the bundle manifest (signatures are checked when the bundle is loaded with --verify-key)"
	} else {
		dv.Verification = "not built: no bundle manifest, nothing to verify"
	}
	newB, err := cand.Compile()
	if err != nil {
		fail(http.StatusBadRequest, "The candidate does not compile: "+err.Error())
		return
	}
	oldB, err := active.Compile()
	if err != nil {
		fail(http.StatusInternalServerError, "The active bundle does not compile again: "+err.Error())
		return
	}
	var reqs []bundles.Request
	if rf, rh, err := r.FormFile("requests"); err == nil {
		reqs, err = bundles.ReadRequests(rf, c.cfg.Validator)
		rf.Close()
		if err != nil {
			fail(http.StatusBadRequest, "Requests file: "+err.Error())
			return
		}
		dv.RequestsFrom = fmt.Sprintf("%d requests from %s", len(reqs), filepath.Base(rh.Filename))
	} else {
		reqs, err = suiteRequests(r.Context(), active, c.cfg.Validator)
		if err != nil {
			fail(http.StatusInternalServerError, "The active bundle's suites could not be read: "+err.Error())
			return
		}
		dv.RequestsFrom = fmt.Sprintf("the %d requests of the active bundle's test suites (upload a JSON-lines file of CheckRequests to replay others)", len(reqs))
	}
	consents := c.cfg.DiffConsents
	note := "replayed with the server's consent store"
	if consents == nil {
		consents = engine.StoreConsents(consentstore.NewMemory())
		note = "replayed without consents"
	}
	dv.Report = bundles.Diff(r.Context(), oldB, newB, reqs, bundles.DiffOptions{
		Consents: consents, ConsentsNote: note, Now: c.now(),
		OldDigest: d.Status.Digest, NewDigest: cand.Digest(),
	})
	d.Diff = dv
	c.render(w, r, http.StatusOK, "bundle", v)
}

// suiteRequests are the requests of the archive's test suites, in file
// and case order.
func suiteRequests(ctx context.Context, a *bundles.Archive, v *validation.Validator) ([]bundles.Request, error) {
	dir, cleanup, err := writeArchive(a)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	files, err := policytest.FindSuites(dir)
	if err != nil {
		return nil, err
	}
	var out []bundles.Request
	n := 0
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := policytest.ParseSuite(f, v)
		if err != nil {
			return nil, err
		}
		for _, tc := range s.Tests {
			n++
			raw, err := protojson.Marshal(tc.Request)
			if err != nil {
				return nil, err
			}
			out = append(out, bundles.Request{Line: n, JSON: string(raw), Msg: tc.Request})
		}
	}
	return out, nil
}

// writeArchive writes a's files to a new temporary directory (the test
// suites are read from disk).
func writeArchive(a *bundles.Archive) (string, func(), error) {
	dir, err := os.MkdirTemp("", "chaperone-console-*")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	fsys := a.FS()
	for _, p := range a.Paths() {
		if !fs.ValidPath(p) || strings.HasPrefix(p, "..") {
			cleanup()
			return "", nil, fmt.Errorf("bad path %q in bundle", p)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			cleanup()
			return "", nil, err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			cleanup()
			return "", nil, err
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return dir, cleanup, nil
}

// policyFiles are the Cedar and Rego sources of a, sorted.
func policyFiles(a *bundles.Archive) []string {
	var out []string
	if a == nil {
		return nil
	}
	for _, p := range a.Paths() {
		if strings.HasSuffix(p, ".cedar") || strings.HasSuffix(p, ".rego") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
