package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeR5 writes an unpacked R5-style package: one StructureDefinition per
// file, with filler datatypes to pass the sanity bound.
func writeR5(t *testing.T, dir string) {
	t.Helper()
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package.json", map[string]string{"name": "hl7.fhir.test.core", "version": "9.9.9", "license": "CC0-1.0"})
	sd := func(name, kind, derivation string, elems ...map[string]any) map[string]any {
		return map[string]any{
			"resourceType": "StructureDefinition", "name": name, "type": name, "kind": kind, "derivation": derivation,
			"url": "http://hl7.org/fhir/StructureDefinition/" + name, "snapshot": map[string]any{"element": elems},
		}
	}
	el := func(path string, min int, max string, extra map[string]any) map[string]any {
		m := map[string]any{"path": path, "min": min, "max": max}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	typ := func(codes ...string) map[string]any {
		var ts []map[string]any
		for _, c := range codes {
			ts = append(ts, map[string]any{"code": c})
		}
		return map[string]any{"type": ts}
	}
	for i := range 55 {
		name := fmt.Sprintf("Filler%02d", i)
		write("StructureDefinition-"+name+".json", sd(name, "complex-type", "specialization", el(name, 0, "*", nil)))
	}
	write("StructureDefinition-Thing.json", sd("Thing", "resource", "specialization",
		el("Thing", 0, "*", nil),
		el("Thing.id", 0, "1", map[string]any{"type": []map[string]any{{
			"code":      "http://hl7.org/fhirpath/System.String",
			"extension": []map[string]any{{"url": fhirTypeExt, "valueUrl": "id"}},
		}}}),
		el("Thing.value[x]", 0, "1", typ("Quantity", "string")),
		el("Thing.part", 1, "*", typ("BackboneElement")),
		el("Thing.part.part", 0, "*", map[string]any{"contentReference": "http://hl7.org/fhir/StructureDefinition/Thing#Thing.part"}),
	))
	// A profile and a logical model are not base definitions.
	write("StructureDefinition-ThingProfile.json", sd("ThingProfile", "resource", "constraint", el("ThingProfile", 0, "*", nil)))
	write("StructureDefinition-Model.json", sd("Model", "logical", "specialization", el("Model", 0, "*", nil)))
}

func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeR5(t, dir)
	out := filepath.Join(dir, "out.tsv.gz")
	if err := run("R5", dir, out); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, want := range []string{
		"#source\thl7.fhir.test.core@9.9.9\tCC0-1.0\n",
		"=Thing\tresource\t0\nThing.id\t0\t1\tid\t\nThing.value[x]\t0\t1\tQuantity,string\t\nThing.part\t1\t*\tBackboneElement\t\nThing.part.part\t0\t*\t\tThing.part\n",
		"=Filler00\tcomplex-type\t0\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for _, not := range []string{"ThingProfile", "Model"} {
		if strings.Contains(text, not) {
			t.Errorf("output holds %s", not)
		}
	}
	// A rerun gives the same bytes.
	if err := run("R5", dir, out); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, first) {
		t.Error("a rerun gave other bytes")
	}
	if err := run("R3", dir, out); err == nil {
		t.Error("unknown version accepted")
	}
	if err := run("R5", t.TempDir(), out); err == nil {
		t.Error("empty source accepted")
	}
}
