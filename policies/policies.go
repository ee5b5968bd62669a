// Package policies embeds the reference policy bundle, so that
// `chaperone serve` decides with nothing else installed. The bundle itself is
// data: the manifest, Cedar and Rego sources beside this file (see README.md).
package policies

import "embed"

// FS holds the reference bundle's files.
//
//go:embed manifest.yaml *.cedar *.rego data/*.json
var FS embed.FS
