package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	chaperonev1 "github.com/chaperone-pdp/chaperone/proto/chaperone/v1"
	"github.com/chaperone-pdp/chaperone/validation"
)

func newCheckCmd(e *env) *cobra.Command {
	var (
		requestFile string
		bundleDir   string
		consentsDir string
		explain     bool
	)
	cmd := &cobra.Command{
		Use:   "check --request REQ.json [--bundle DIR] [--consents DIR] [--explain]",
		Short: "Decide one CheckRequest (proto3 JSON) and print the response JSON",
		Long: `check decides one request exactly as the server would and prints the
CheckResponse JSON. With --explain, a trace of the consent layer and every
policy layer goes to stderr. Exit 0 for any decision, 2 for bad input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if requestFile == "" {
				return usageErrorf("--request is required (a file, or - for stdin)")
			}
			v, err := validation.New()
			if err != nil {
				return err
			}
			req := &chaperonev1.CheckRequest{}
			if err := readRequest(e, v, requestFile, req); err != nil {
				return err
			}
			eng, err := newEngine(cmd.Context(), bundleDir, consentsDir, nil)
			if err != nil {
				return err
			}
			var resp *chaperonev1.CheckResponse
			if explain {
				r, trace := eng.Explain(cmd.Context(), req)
				resp = r
				fmt.Fprint(e.stderr, trace.String())
			} else {
				resp = eng.Check(cmd.Context(), req)
			}
			return printProtoJSON(e.stdout, resp)
		},
	}
	cmd.Flags().StringVar(&requestFile, "request", "", "CheckRequest JSON file (- for stdin)")
	cmd.Flags().StringVar(&bundleDir, "bundle", "", "policy directory (default: the embedded reference bundle)")
	cmd.Flags().StringVar(&consentsDir, "consents", "", "directory or file of FHIR Consent resources to decide against")
	cmd.Flags().BoolVar(&explain, "explain", false, "print a trace of the layers and policies to stderr")
	return cmd
}

// readRequest reads and validates a proto3 JSON message from a file or stdin.
func readRequest(e *env, v *validation.Validator, file string, msg proto.Message) error {
	data, err := readInput(e, file)
	if err != nil {
		return err
	}
	if err := v.DecodeJSON(data, msg); err != nil {
		var verr *validation.Error
		if errors.As(err, &verr) {
			return usageErrorf("%s: %v", file, err)
		}
		return err
	}
	return nil
}

// readInput reads a request file, or stdin for "-".
func readInput(e *env, file string) ([]byte, error) {
	var (
		data []byte
		err  error
	)
	if file == "-" {
		data, err = io.ReadAll(e.stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usageErrorf("read request: %v", err)
	}
	return data, nil
}

// printProtoJSON writes msg as indented proto3 JSON, the form the API speaks.
func printProtoJSON(w io.Writer, msg proto.Message) error {
	raw, err := protojson.Marshal(msg)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}
