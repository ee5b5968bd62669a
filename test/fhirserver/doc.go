// Package fhirserver runs `chaperone proxy` in front of a real FHIR R4
// server, Medplum's FhirRouter over its MemoryRepository
// (@medplum/fhir-router 4.5.2, Apache-2.0, which runs on Node 20.19 and
// later; Medplum 5 needs Node 22.18), wrapped in server.mjs and installed
// from the committed package-lock.json with npm ci. The tests skip when
// node or npm is absent.
package fhirserver
