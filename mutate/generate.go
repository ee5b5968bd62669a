package mutate

import (
	"fmt"
	"io/fs"
	"strings"
)

// Source is one policy file of a bundle.
type Source struct {
	File string
	Src  []byte
}

// Sources reads the policy files (*.cedar, *.rego) of a bundle directory,
// skipping hidden directories and testdata as the engine does.
func Sources(fsys fs.FS) ([]Source, error) {
	var out []Source
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".cedar") || strings.HasSuffix(p, ".rego") {
			src, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			out = append(out, Source{File: p, Src: src})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	return out, nil
}

// Generate returns the mutants of a policy file, by its extension.
func Generate(s Source) ([]Mutant, error) {
	if strings.HasSuffix(s.File, ".rego") {
		return Rego(s.File, s.Src)
	}
	return Cedar(s.File, s.Src)
}
