package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/keyset"
)

// TestAuditReportsEncrypted writes the same decisions to a log in clear and
// to one with --audit-encryption-key-file's sealing: the sealed file names
// no patient, subject, resource id or break-glass reason; verify needs no
// key; and every report given the key set prints exactly what it prints
// for the clear log, while without it the report refuses (exit 2) rather
// than find nobody.
func TestAuditReportsEncrypted(t *testing.T) {
	t.Parallel()
	ds := sampleDecisions()
	clearLog, _ := writeAuditLog(t, ds)
	keys := filepath.Join(t.TempDir(), "audit-keys.json")
	if code, _, stderr := runAudit(t, "keys", "new", "-o", keys, "--id", "a1"); code != 0 {
		t.Fatal(stderr)
	}
	ks, err := keyset.Load(keys)
	if err != nil {
		t.Fatal(err)
	}
	fk, err := audit.NewFieldKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	sealedLog, pub := writeAuditLog(t, ds, audit.WithFieldKeys(fk))
	raw, err := os.ReadFile(sealedLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"Patient/5", "Patient/10", "Practitioner/p", `"o1"`, "unconscious"} {
		if strings.Contains(string(raw), clear) {
			t.Errorf("the sealed log holds %q in clear text", clear)
		}
	}
	if code, out, stderr := runAudit(t, "audit", "verify", "--file", sealedLog, "--pub", pub+".pub.pem"); code != 0 {
		t.Fatalf("verify without the field key: %d %s %s", code, out, stderr)
	}
	// A rotated set (a new primary, the old key kept) reads it too.
	if code, _, stderr := runAudit(t, "keys", "rotate", keys, "--id", "a2"); code != 0 {
		t.Fatal(stderr)
	}
	reports := [][]string{
		{"audit", "disclosures", "--patient", "Patient/52", "--include-tpo", "--format", "json"},
		{"audit", "disclosures", "--patient", "Patient/53", "--include-tpo", "--format", "json"},
		{"audit", "break-glass", "--format", "json"},
		{"audit", "anomalies", "--format", "json", "--distinct-patients", "5", "--sequential-ids", "5"},
		{"audit", "changes", "--format", "json"},
	}
	nonEmpty := 0
	for _, args := range reports {
		name := strings.Join(args[1:3], " ")
		code, want, stderr := runAudit(t, append(args, "--file", clearLog)...)
		if code != 0 {
			t.Fatalf("%s on the clear log: %d %s %s", name, code, want, stderr)
		}
		if len(want) > 5 {
			nonEmpty++
		}
		code, got, stderr := runAudit(t, append(args, "--file", sealedLog, "--audit-encryption-key-file", keys)...)
		if code != 0 || got != want {
			t.Errorf("%s on the sealed log with the key: %d %s\n got %s\nwant %s", name, code, stderr, got, want)
		}
		if code, _, stderr := runAudit(t, append(args, "--file", sealedLog)...); code != 2 || !strings.Contains(stderr, "--audit-encryption-key-file") {
			t.Errorf("%s on the sealed log without the key: exit %d %s", name, code, stderr)
		}
	}
	if nonEmpty < 3 {
		t.Errorf("only %d reports found anything: the comparison proves little", nonEmpty)
	}
}
