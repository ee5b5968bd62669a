package main

import (
	"github.com/chaperone-pdp/chaperone/audit"
	"github.com/chaperone-pdp/chaperone/keyset"
)

// auditFieldKeysHelp documents --audit-encryption-key-file, for serve and
// the audit reports alike.
const auditFieldKeysHelp = "key set (as for --encryption-key-file; chaperone keys new/rotate) sealing the identifying fields of audit records (patient, subject, resource id, IP, break-glass reason) with a blind index of patient and subject; the reports need it to find and show them, audit verify does not"

// loadFieldKeys reads --audit-encryption-key-file; nil when not given.
func loadFieldKeys(path string) (*audit.FieldKeys, error) {
	if path == "" {
		return nil, nil
	}
	ks, err := keyset.Load(path)
	if err != nil {
		return nil, usageErrorf("--audit-encryption-key-file: %v", err)
	}
	fk, err := audit.NewFieldKeys(ks)
	if err != nil {
		return nil, usageErrorf("--audit-encryption-key-file: %v", err)
	}
	return fk, nil
}
