package pep

// ParseCompact parses b with the package's scanner and writes it back
// compactly, for the differential test against jsontext.
func ParseCompact(b []byte) ([]byte, error) {
	n, err := parse(b)
	if err != nil {
		return nil, err
	}
	return appendJSON(nil, n), nil
}

const MaxDepth = maxDepth

// ParseLevelsCompact is ParseCompact with a tree only levels deep.
func ParseLevelsCompact(b []byte, levels int) ([]byte, error) {
	n, err := parseLevels(b, levels)
	if err != nil {
		return nil, err
	}
	return appendJSON(nil, n), nil
}
