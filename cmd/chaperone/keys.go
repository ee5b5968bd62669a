package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-pdp/chaperone/keyset"
)

// Encryption at rest is on whenever Redis is used. Without
// --encryption-key-file (or $CHAPERONE_ENCRYPTION_KEY), serve uses the key
// set at defaultKeyFile, generating it on first start.
const generatedKeyFile = "chaperone/encryption-keys.json"

// defaultKeyFile is $XDG_CONFIG_HOME/chaperone/encryption-keys.json, else
// $HOME/.config/chaperone/encryption-keys.json; "" when neither is set.
func defaultKeyFile(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, generatedKeyFile)
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", generatedKeyFile)
	}
	return ""
}

// loadKeySet reads the key set from the file, else from the environment;
// nil when neither is set. Either holds the JSON key set or one key in
// standard base64 (a set of one); anything else is refused, and the error
// never shows the key.
func loadKeySet(file string, getenv func(string) string) (*keyset.Set, error) {
	switch {
	case file != "":
		ks, err := keyset.Load(file)
		if err != nil {
			return nil, fmt.Errorf("--encryption-key-file: %w", err)
		}
		return ks, nil
	case getenv(encryptionKeyEnv) != "":
		ks, err := keyset.Parse([]byte(getenv(encryptionKeyEnv)))
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", encryptionKeyEnv, err)
		}
		return ks, nil
	}
	return nil, nil
}

// serveKeySet is the key set of serve's Redis store: the one given, else
// the one at the default path, generated there on first start with a loud
// warning. Encryption at rest cannot be turned off. Generating rather than
// refusing to start keeps a first start with --redis one command; a second
// replica that generated its own key instead of sharing the file cannot
// read the first one's records and denies (CONSENT_UNAVAILABLE, the
// unknown key id in the log): it fails closed, never open.
func serveKeySet(file string, getenv func(string) string, now time.Time, logger *slog.Logger) (*keyset.Set, error) {
	ks, err := loadKeySet(file, getenv)
	if err != nil || ks != nil {
		return ks, err
	}
	path := defaultKeyFile(getenv)
	if path == "" {
		return nil, errors.New("--redis: consents are encrypted at rest: give --encryption-key-file (make one with chaperone keys new -o FILE); $HOME is not set, so no key file can be generated")
	}
	if ks, err := keyset.Load(path); err == nil {
		logger.Warn("encryption at rest: using the generated key file; every replica must use the same file, and losing it loses every consent in Redis: back it up, or give --encryption-key-file", slog.String("path", path))
		return ks, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("generated key file: %w", err)
	}
	ks, err = keyset.Generate(keyset.NewID(now))
	if err != nil {
		return nil, err
	}
	if err := ks.WriteFile(path); errors.Is(err, fs.ErrExist) {
		return keyset.Load(path) // another process generated it first
	} else if err != nil {
		return nil, fmt.Errorf("generate key file %s: %w", path, err)
	}
	id, _ := ks.Primary()
	logger.Error("ENCRYPTION KEY GENERATED: no --encryption-key-file was given, so consents, grants and agreements in Redis are encrypted under a new key written to this file. Every replica must be given the same file (--encryption-key-file), and losing it makes every record in Redis unreadable: back it up now.",
		slog.String("path", path), slog.String("key_id", id))
	return ks, nil
}

// newKeysCmd is "chaperone keys": make and rotate key set files.
func newKeysCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make and rotate encryption key sets (--encryption-key-file, --audit-encryption-key-file)",
		Long: `A key set file is JSON: {"primary": "k2", "keys": {"k1": "<32 bytes, base64>", "k2": "..."}}.
New data is sealed under the primary key; data is read with the key whose id
is stored with it. Rotate: keys rotate FILE (adds a new primary), give the
file to every replica, rewrite the data (chaperone consent reencrypt), then
keys drop FILE OLD-ID.`,
	}
	var id string
	idFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&id, "id", "", "id of the new key (default: k and the UTC time, e.g. k20261201T031500Z)")
	}
	newID := func() string {
		if id != "" {
			return id
		}
		return keyset.NewID(time.Now())
	}
	var out string
	newCmd := &cobra.Command{
		Use:   "new -o FILE [--id ID]",
		Short: "Write a new key set of one random key (mode 0600; an existing file is not replaced)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return usageErrorf("-o is required")
			}
			ks, err := keyset.Generate(newID())
			if err != nil {
				return usageErrorf("%v", err)
			}
			if err := ks.WriteFile(out); err != nil {
				return usageErrorf("keys new: %v", err)
			}
			k, _ := ks.Primary()
			fmt.Fprintf(e.stdout, "wrote %s, primary key %s\n", out, k)
			return nil
		},
	}
	newCmd.Flags().StringVarP(&out, "output", "o", "", "the key set file to write")
	idFlag(newCmd)
	rotate := &cobra.Command{
		Use:   "rotate FILE [--id ID]",
		Short: "Add a new random key to the set in FILE and make it the primary (the old keys stay, for reading)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return rewriteKeySet(e, args[0], func(ks *keyset.Set) (*keyset.Set, error) { return ks.Rotate(newID()) })
		},
	}
	idFlag(rotate)
	drop := &cobra.Command{
		Use:   "drop FILE ID",
		Short: "Remove a key that is not the primary from the set in FILE (once no data is sealed under it)",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			return rewriteKeySet(e, args[0], func(ks *keyset.Set) (*keyset.Set, error) { return ks.Drop(args[1]) })
		},
	}
	cmd.AddCommand(newCmd, rotate, drop)
	return cmd
}

// rewriteKeySet replaces the key set in path by change's result (a file
// of one base64 key becomes the JSON form), through a new file renamed
// over it.
func rewriteKeySet(e *env, path string, change func(*keyset.Set) (*keyset.Set, error)) error {
	ks, err := keyset.Load(path)
	if err != nil {
		return usageErrorf("%v", err)
	}
	next, err := change(ks)
	if err != nil {
		return usageErrorf("%v", err)
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := next.WriteFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	p, _ := next.Primary()
	fmt.Fprintf(e.stdout, "wrote %s: primary %s, keys %s\n", path, p, strings.Join(next.IDs(), ", "))
	return nil
}

func primaryID(ks *keyset.Set) string {
	id, _ := ks.Primary()
	return id
}
