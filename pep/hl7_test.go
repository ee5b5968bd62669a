package pep_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/chaperone-pdp/chaperone/fhir/elements"
	"github.com/chaperone-pdp/chaperone/pep"
	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
)

// TestHL7ExamplesAll runs every resource of the HL7 FHIR R4 examples
// package (npm hl7.fhir.r4.examples 4.0.1, CC0) through Apply: the package
// installed from testdata/hl7pkg's lockfile (test/deps.sh does it: `cd
// pep/testdata/hl7pkg && npm ci`), or the folder CHAPERONE_HL7_EXAMPLES
// names. Without either it skips.
//
// For each resource and each of its top-level elements, masking that
// element leaves it nowhere in the output (nor in any resource of the same
// type nested in it), and each Bundle filtered with every entry denied
// keeps no entry resource but OperationOutcomes.
func TestHL7ExamplesAll(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("CHAPERONE_HL7_EXAMPLES")
	if dir == "" {
		dir = filepath.Join("testdata", "hl7pkg", "node_modules", "hl7.fhir.r4.examples")
		if _, err := os.Stat(filepath.Join(dir, "Patient-example.json")); err != nil {
			t.Skip("the HL7 R4 examples are not installed: cd pep/testdata/hl7pkg && npm ci (test/deps.sh does it)")
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s: %v", dir, err)
	}
	r4 := elements.For(elements.R4)
	var resources, masked, bundles int
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var res map[string]any
		if json.Unmarshal(in, &res) != nil {
			continue // package.json and the index are not resources
		}
		typ, _ := res["resourceType"].(string)
		if !r4.IsResource(typ) {
			continue
		}
		resources++
		if out, withheld, err := pep.Apply(nil, in); err != nil || withheld || string(out) != string(in) {
			t.Errorf("%s: no obligations: withheld=%v err=%v", f, withheld, err)
		}
		for name := range res {
			name = strings.TrimPrefix(name, "_")
			el, ok := r4.Lookup(typ + "." + name)
			if !ok || name == "resourceType" || name == "meta" {
				continue
			}
			gone := typ + "." + el.Name
			if el.Choice {
				gone += "[x]"
			}
			out, withheld, err := pep.Apply(masks(typ+"."+name), in)
			if err != nil || withheld {
				t.Errorf("%s: mask %s.%s: withheld=%v err=%v", f, typ, name, withheld, err)
				continue
			}
			masked++
			if reaches(decode(t, out), gone) {
				t.Errorf("%s: %s still in output", f, gone)
			}
		}
		if typ == "Bundle" {
			bundles++
			same, withheld, err := pep.ApplyBundle(in, func(rs []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
				out := make([]*chaperonev1.CheckResponse, len(rs))
				for i := range out {
					out[i] = &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_ALLOW}
				}
				return out, nil
			})
			if err != nil || withheld != 0 || !reflect.DeepEqual(decode(t, same), decode(t, in)) {
				t.Errorf("%s: allowed Bundle changed: withheld=%d err=%v", f, withheld, err)
			}
			out, _, err := pep.ApplyBundle(in, func(rs []json.RawMessage) ([]*chaperonev1.CheckResponse, error) {
				out := make([]*chaperonev1.CheckResponse, len(rs))
				for i := range out {
					out[i] = &chaperonev1.CheckResponse{Decision: chaperonev1.Decision_DECISION_DENY}
				}
				return out, nil
			})
			if err != nil {
				t.Errorf("%s: ApplyBundle: %v", f, err)
				continue
			}
			var b struct {
				Entry []struct{ Resource map[string]any }
			}
			if err := json.Unmarshal(out, &b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, e := range b.Entry {
				if e.Resource != nil && e.Resource["resourceType"] != "OperationOutcome" && e.Resource["resourceType"] != "Bundle" {
					t.Errorf("%s: denied %v released", f, e.Resource["resourceType"])
				}
			}
		}
	}
	t.Logf("%d example resources, %d element masks, %d Bundles filtered", resources, masked, bundles)
}
