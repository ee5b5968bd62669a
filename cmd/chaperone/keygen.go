package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/edkey"
)

// newKeygenCmd is `bundle keygen` and `audit keygen`: one kind of Ed25519
// key pair (edkey), one key id, whichever command wrote it; a key may sign
// bundles and checkpoints alike, though separate keys are better practice.
func newKeygenCmd(e *env, short string) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen -o NAME",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("-o is required")
			}
			id, err := edkey.WritePair(out)
			if err != nil {
				return usageErrorf("keygen: %v", err)
			}
			fmt.Fprintf(e.stdout, "wrote %s.pem and %s.pub.pem, key id %s\n", out, out, id)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file name prefix of the key pair")
	return cmd
}
