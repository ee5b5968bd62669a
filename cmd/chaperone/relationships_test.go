package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chaperone-pdp/chaperone/consentstore"
	"github.com/chaperone-pdp/chaperone/proto/chaperone/v1/chaperonev1connect"
	"github.com/chaperone-pdp/chaperone/server"
	"github.com/chaperone-pdp/chaperone/test/redistest"
)

func runRelationships(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRelationshipsCmd(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	if err == nil {
		return exitOK, out.String(), errb.String()
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, out.String(), err.Error()
	}
	return exitUsage, out.String(), err.Error()
}

const importCareTeam = `{"resourceType": "Bundle", "type": "collection", "entry": [
  {"resource": {"resourceType": "CareTeam", "id": "ct1", "status": "%s",
    "subject": {"reference": "Patient/52"}, "managingOrganization": [{"reference": "Organization/o1"}],
    "participant": [{"member": {"reference": "Practitioner/p1"}}, {"member": {"reference": "PractitionerRole/r1"}}%s]}},
  {"resource": {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/p3"}}}]}`

const importEncounter = `{"resourceType": "Encounter", "id": "e1", "status": "in-progress", "subject": {"reference": "Patient/53"},
  "period": {"start": "2025-01-01T10:00:00Z"}, "participant": [{"individual": {"reference": "Practitioner/p2"}}]}`

func careTeamFile(status, extra string) string {
	return strings.Replace(strings.Replace(importCareTeam, "%s", status, 1), "%s", extra, 1)
}

// TestRelationshipsImport: into Redis and through a server; a re-import
// synchronises each resource (a removed participant, an inactive CareTeam
// delete what it stored before); bad input writes nothing.
func TestRelationshipsImport(t *testing.T) {
	t.Parallel()
	addr, _ := redistest.Start(t)
	url := "redis://" + addr + "/0"
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	store, err := consentstore.NewRedis(client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	active := func(pr, pa string) bool {
		t.Helper()
		ok, err := store.ActiveRelationship(ctx, pr, pa, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	dir := t.TempDir()
	writeFile(t, dir, "careteam.json", careTeamFile("active", `, {"member": {"reference": "Practitioner/p4"}}`))
	writeFile(t, dir, "encounter.json", importEncounter)
	code, stdout, stderr := runRelationships(t, "import", "--file", dir, "--redis", url)
	if code != exitOK || !strings.Contains(stdout, "imported 4 relationships from 2 resources in 2 files") {
		t.Fatalf("exit %d %q %q", code, stdout, stderr)
	}
	for _, pr := range []string{"Practitioner/p1", "Practitioner/p3", "Practitioner/p4"} {
		if !active(pr, "Patient/52") {
			t.Errorf("%s does not treat Patient/52", pr)
		}
	}
	if !active("Practitioner/p2", "Patient/53") || active("Practitioner/p2", "Patient/52") {
		t.Error("encounter relationship wrong")
	}

	// p4 leaves the care team: the re-import removes that relationship only.
	writeFile(t, dir, "careteam.json", careTeamFile("active", ""))
	if code, stdout, stderr := runRelationships(t, "import", "--file", dir+"/careteam.json", "--redis", url); code != exitOK || !strings.Contains(stdout, "(1 removed)") {
		t.Fatalf("re-import: exit %d %q %q", code, stdout, stderr)
	}
	if active("Practitioner/p4", "Patient/52") || !active("Practitioner/p1", "Patient/52") {
		t.Error("a removed participant still treats, or a kept one no longer does")
	}

	// The CareTeam is entered in error: nothing of it counts any more.
	writeFile(t, dir, "careteam.json", careTeamFile("entered-in-error", ""))
	if code, _, stderr := runRelationships(t, "import", "--file", dir+"/careteam.json", "--redis", url); code != exitOK {
		t.Fatalf("entered-in-error: exit %d %q", code, stderr)
	}
	if active("Practitioner/p1", "Patient/52") || active("Practitioner/p3", "Patient/52") {
		t.Error("an entered-in-error CareTeam still counts")
	}
	if !active("Practitioner/p2", "Patient/53") {
		t.Error("another resource's relationship was removed")
	}

	// Through a server's RelationshipService.
	mem := consentstore.NewMemoryRelationships(nil)
	mux := http.NewServeMux()
	mux.Handle(chaperonev1connect.NewRelationshipServiceHandler(server.NewRelationshipService(mem)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	writeFile(t, dir, "careteam.json", careTeamFile("active", ""))
	if code, _, stderr := runRelationships(t, "import", "--file", dir, "--addr", strings.TrimPrefix(srv.URL, "http://")); code != exitOK {
		t.Fatalf("--addr: exit %d %q", code, stderr)
	}
	if ok, _ := mem.ActiveRelationship(ctx, "Practitioner/p3", "Patient/52", at); !ok {
		t.Error("--addr: the role's practitioner does not treat Patient/52")
	}

	bad := writeFile(t, t.TempDir(), "bad.json", strings.Replace(importEncounter, "Patient/53", "Group/1", 1))
	if code, _, stderr := runRelationships(t, "import", "--file", bad, "--redis", url); code != exitUsage || !strings.Contains(stderr, "subject") {
		t.Errorf("bad file: exit %d %q", code, stderr)
	}
	for _, args := range [][]string{
		{"import", "--file", dir},
		{"import", "--file", dir, "--redis", url, "--addr", srv.URL},
		{"import", "--redis", url},
	} {
		if code, _, _ := runRelationships(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want usage", args, code)
		}
	}
	closed := httptest.NewServer(mux)
	closed.Close()
	if code, _, _ := runRelationships(t, "import", "--file", dir, "--addr", closed.URL); code != exitFailed {
		t.Errorf("server down: exit %d", code)
	}
}
