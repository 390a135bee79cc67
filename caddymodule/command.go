package caddymodule

import (
	"errors"
	"fmt"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth",
		Usage: "<command> [flags]",
		Short: "Manages oauthgate clients",
		Long: `
Commands for the operator of an oauthgate gateway. They work on the files
the "oauth" app reads; a running Caddy picks up changes on "caddy reload".
`,
		CobraFunc: func(cmd *cobra.Command) {
			client := &cobra.Command{
				Use:   "client <command>",
				Short: "Manages the OAuth clients in a clients file",
			}
			client.AddCommand(clientAddCommand())
			cmd.AddCommand(client)
		},
	})
}

func clientAddCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "add --clients <file> --name <name> [--description <text>] [--lifetime <duration>]",
		Short: "Registers a new client and prints its ID and secret once",
		Long: `
Registers an OAuth client in the clients file (created if missing): a new
client ID and a secret of 256 random bits are generated, and only a hash of
the secret is stored. The secret is printed once and cannot be shown again.

The client's token subject is oauth_client_<client ID>: grant it roles under
"subjects" in the policy file.

The file is replaced atomically: a crash leaves the old file or the new one.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("clients")
			name, _ := cmd.Flags().GetString("name")
			desc, _ := cmd.Flags().GetString("description")
			lifetime, _ := cmd.Flags().GetDuration("lifetime")
			switch {
			case path == "":
				return errors.New("--clients is required")
			case name == "":
				return errors.New("--name is required")
			case lifetime <= 0:
				return errors.New("--lifetime must be positive")
			}
			f, err := clients.ReadFileOrEmpty(path)
			if err != nil {
				return err
			}
			secret, stored := clients.NewSecret()
			client := clients.Client{
				ID:            clients.NewID(),
				Name:          name,
				Description:   desc,
				Secrets:       []clients.Secret{stored},
				TokenLifetime: lifetime.String(),
			}
			f.Clients = append(f.Clients, client)
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client %q added to %s.\n", name, path)
			fmt.Fprintf(out, "client_id:     %s\n", client.ID)
			fmt.Fprintf(out, "client_secret: %s\n", secret)
			fmt.Fprintf(out, "subject:       %s\n", client.Subject())
			fmt.Fprintln(out, "The secret is shown only this once; only its hash is stored.")
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("name", "", "a short name for the client (required)")
	c.Flags().String("description", "", "free text describing the client")
	c.Flags().Duration("lifetime", clients.DefaultTokenLifetime, "lifetime of the client's access tokens")
	return c
}
