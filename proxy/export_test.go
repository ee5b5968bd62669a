package proxy

// ApplyPatch exposes applyPatch to the tests.
func ApplyPatch(doc map[string]any, patch []byte) (map[string]any, error) {
	return applyPatch(doc, patch)
}
