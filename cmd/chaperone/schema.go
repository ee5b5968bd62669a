package main

import (
	"bytes"
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/engine"
)

func newSchemaCmd(e *env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "schema [--format cedar|json|rego-json]",
		Short: "Print the schema of what the engine gives policies",
		Long: `schema prints the schema of the entities, actions and context the engine
gives Cedar policies, or of the input document it gives Rego policies,
generated from the engine's one model of them. Every bundle's policies are
checked against these schemas when the bundle compiles (chaperone test,
bundle build, every bundle load).

  --format cedar      the Cedar schema, human-readable format (default)
  --format json       the Cedar schema, Cedar's JSON schema format
  --format rego-json  the JSON Schema of the Rego input document`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := engine.NewPolicyModel()
			var out []byte
			switch format {
			case "cedar":
				out = m.CedarSchema()
			case "json":
				raw, err := m.CedarSchemaJSON()
				if err != nil {
					return err
				}
				var b bytes.Buffer
				if err := json.Indent(&b, raw, "", "  "); err != nil {
					return err
				}
				out = append(b.Bytes(), '\n')
			case "rego-json":
				out = m.InputSchema()
			default:
				return usageErrorf("--format %q: want cedar, json or rego-json", format)
			}
			_, err := e.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "cedar", "cedar, json (Cedar JSON schema) or rego-json (JSON Schema of the Rego input)")
	return cmd
}
