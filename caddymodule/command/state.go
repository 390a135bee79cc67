package command

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

// stateCommand is `caddy oauth state`, with its subcommands.
func stateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "state <command>",
		Short: "Makes the key that seals the fleet's state in Redis",
		Long: `
With "state redis" in the oauth option, a fleet keeps its signing keys and
the opaque-token MAC key in Redis, encrypted under a key ring the operator
gives in a file (sealing_keys_file) or an environment variable
(sealing_keys_env). These commands help manage that ring.
`,
		Example: `  $ caddy oauth state key --id 2026-12 >> /etc/oauthgate/sealing.keys`,
		RunE:    groupRunE,
	}
	c.AddCommand(stateKeyCommand())
	return c
}

func stateKeyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "key --id <key ID>",
		Short: "Prints a new random sealing key, one line of a key ring",
		Long: `
Prints a new 256-bit sealing key as one line of a key ring:
<id>:<base64 of 32 bytes>. The first key of a ring seals, every key
opens. To rotate: add the new line second in every instance's ring and
reload them all (every instance can now open what the new key seals);
then move it first and reload them all (a value sealed by the old key is
sealed again under the new one as an instance reads it, which every
instance does when its config loads); then remove the old line and
reload.

Every instance of a fleet needs the same ring; keep it like a private key
(readable by the gateway only). The key is printed, never stored.
`,
		Example: `  $ caddy oauth state key --id 2026-12
  2026-12:3q2+7w…=`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, _ := cmd.Flags().GetString("id")
			if id == "" {
				return usagef("--id is required (a short name for the key, e.g. the month it was made)")
			}
			line, err := sealing.Generate(id)
			if err != nil {
				return usageError{err}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), line)
			return err
		},
	}
	c.Flags().String("id", "", "the key's ID: 1 to 32 of A-Z a-z 0-9 _ -")
	return c
}
