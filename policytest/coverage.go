package policytest

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/chaperone-pdp/chaperone/engine"
)

// Coverage says, per policy id of the bundle, how many tests involved it.
type Coverage struct {
	Policies []PolicyCoverage
}

// PolicyCoverage is the number of tests that involved one policy.
type PolicyCoverage struct {
	ID   string `json:"id"`
	Hits int    `json:"hits"`
}

// Uncovered lists the policies no test involved.
func (c Coverage) Uncovered() []string {
	var out []string
	for _, p := range c.Policies {
		if p.Hits == 0 {
			out = append(out, p.ID)
		}
	}
	return out
}

type coverage struct {
	hits map[string]int
}

// newCoverage lists the bundle's policy ids. The engine names Cedar policies
// by their @id and Rego modules by package; for Rego the ids are read from
// the sources in dir: the literal ids of permit and deny rules ("id" or
// {"id": "id", ...}).
func newCoverage(b *engine.Bundle, dir string) *coverage {
	c := &coverage{hits: map[string]int{}}
	pkgs, ids := regoPolicyIDs(dir)
	for _, id := range b.PolicyIDs() {
		if !slices.Contains(pkgs, id) {
			c.hits[id] = 0
		}
	}
	for _, id := range ids {
		c.hits[id] = 0
	}
	return c
}

func (c *coverage) record(ids []string) {
	for _, id := range ids {
		if _, known := c.hits[id]; known {
			c.hits[id]++
		}
	}
}

func (c *coverage) result() Coverage {
	var out Coverage
	for id, n := range c.hits {
		out.Policies = append(out.Policies, PolicyCoverage{ID: id, Hits: n})
	}
	sort.Slice(out.Policies, func(i, j int) bool { return out.Policies[i].ID < out.Policies[j].ID })
	return out
}

// regoPolicyIDs returns the packages of the Rego modules under dir and the
// literal policy ids their permit and deny rules produce.
func regoPolicyIDs(dir string) (pkgs, ids []string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		m, err := ast.ParseModuleWithOpts(p, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil
		}
		pkgs = append(pkgs, strings.TrimPrefix(m.Package.Path.String(), "data."))
		for _, r := range m.Rules {
			ref := r.Head.Ref()
			if len(ref) != 1 || r.Head.Key == nil {
				continue
			}
			if name := ref[0].Value.String(); name != "permit" && name != "deny" {
				continue
			}
			switch k := r.Head.Key.Value.(type) {
			case ast.String:
				ids = append(ids, string(k))
			case ast.Object:
				if t := k.Get(ast.StringTerm("id")); t != nil {
					if s, ok := t.Value.(ast.String); ok {
						ids = append(ids, string(s))
					}
				}
			}
		}
		return nil
	})
	return pkgs, ids
}
