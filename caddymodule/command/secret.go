package command

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// clientCommand is `caddy oauth client`, with its subcommands.
func clientCommand() *cobra.Command {
	client := &cobra.Command{
		Use:   "client <command>",
		Short: "Manages the OAuth clients in a clients file",
		Long: `
Manages the OAuth clients in a clients file: register, list, show, disable,
enable and remove clients, and rotate or retire their secrets.

Secrets are never stored in clear. A generated secret (the default: 256
random bits) is stored as its SHA-256 digest and printed once; a secret
chosen by a person (--secret-stdin) is stored with argon2id. No command
shows a stored hash.

Every change replaces the file atomically. A running gateway watches the
file and applies a change within a second or two.
`,
		Example: `  $ caddy oauth client add --clients clients.json --name order-sender
  $ caddy oauth client list --clients clients.json`,
		RunE: groupRunE,
	}
	client.AddCommand(clientAddCommand(), clientListCommand(), clientShowCommand(),
		clientSetDisabledCommand(true), clientSetDisabledCommand(false), clientRemoveCommand(),
		clientRotateSecretCommand(), clientRetireSecretCommand())
	return client
}

const secretStdinHelp = "read a secret chosen by a person from standard input (16 to 512 characters; one trailing newline is dropped) and store it with argon2id, instead of generating one"

func clientAddCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "add --clients <file> --name <name> [--description <text>] [--lifetime <duration>] [--audience <aud>]... [--secret-stdin]",
		Short: "Registers a new client and prints its ID and secret once",
		Long: `
Registers an OAuth client in the clients file (created if missing): a new
client ID and a secret of 256 random bits are generated, and only a hash of
the secret is stored. The secret is printed once and cannot be shown again.

With --secret-stdin, the secret is not generated but read from standard
input: one chosen by a person, of 16 to 512 characters (a trailing newline
is dropped). It is stored with argon2id, which makes guessing it from a
stolen clients file slow, and it is not printed. Prefer generated secrets:
they cannot be guessed at all.

The client's token subject is oauth_client_<client ID>: grant it roles under
"subjects" in the policy file.

--lifetime 0 means what it meant in SAP BTP Neo: each token stays valid until
the client requests a new one (and at most the gateway's max_token_lifetime).
--audience, repeatable, lists the resource servers the client may obtain
tokens for; the first is its default. Without it, the gateway's own audience.

The file is replaced atomically: a crash leaves the old file or the new one.
`,
		Example: `  $ caddy oauth client add --clients clients.json --name order-sender --description "ERP order feed"
  $ printf '%s' "$SECRET" | caddy oauth client add --clients clients.json --name legacy --secret-stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("clients")
			name, _ := cmd.Flags().GetString("name")
			desc, _ := cmd.Flags().GetString("description")
			lifetime, _ := cmd.Flags().GetDuration("lifetime")
			audiences, _ := cmd.Flags().GetStringArray("audience")
			fromStdin, _ := cmd.Flags().GetBool("secret-stdin")
			switch {
			case path == "":
				return usagef("--clients is required")
			case name == "":
				return usagef("--name is required")
			case lifetime < 0:
				return usagef("--lifetime must not be negative (0: valid until the next token)")
			}
			// The secret first: a bad one must not leave a changed file.
			secret, stored, err := newSecret(cmd, fromStdin)
			if err != nil {
				return err
			}
			f, err := clients.ReadFileOrEmpty(path)
			if err != nil {
				return err
			}
			stored.Created = commandNow().UTC().Format(time.RFC3339)
			client := clients.Client{
				ID:            clients.NewID(),
				Name:          name,
				Description:   desc,
				Secrets:       []clients.Secret{stored},
				TokenLifetime: lifetime.String(),
				Audiences:     audiences,
			}
			f.Clients = append(f.Clients, client)
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client %q added to %s.\n", name, path)
			fmt.Fprintf(out, "client_id:     %s\n", client.ID)
			if !fromStdin {
				fmt.Fprintf(out, "client_secret: %s\n", secret)
			}
			fmt.Fprintf(out, "subject:       %s\n", client.Subject())
			if fromStdin {
				fmt.Fprintln(out, "The secret read from standard input is stored as an argon2id hash; it is not shown.")
			} else {
				fmt.Fprintln(out, "The secret is shown only this once; only its hash is stored.")
			}
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("name", "", "a short name for the client (required)")
	c.Flags().String("description", "", "free text describing the client")
	c.Flags().Duration("lifetime", clients.DefaultTokenLifetime, "lifetime of the client's access tokens; 0: valid until the client requests a new one")
	c.Flags().StringArray("audience", nil, "a resource server the client may obtain tokens for (repeatable; the first is the default)")
	c.Flags().Bool("secret-stdin", false, secretStdinHelp)
	return c
}

func clientRotateSecretCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate-secret --clients <file> --id <client ID> [--secret-stdin] [--retire-old-after <duration>]",
		Short: "Adds a new secret to a client; the old ones keep working until retired",
		Long: `
Adds a secret to a registered client, so that its credentials can be
changed without an outage:

  1. rotate-secret: the client now has its old secret and the new one, and
     both authenticate.
  2. Configure the sender system with the new secret.
  3. retire-secret --secret-id <old>: the old secret stops working.

With --retire-old-after, step 3 happens by itself: every other secret of
the client expires that long from now (a secret that already expires
sooner keeps its earlier expiry), and an expired secret no longer
authenticates. --retire-old-after 0 ends the old secrets at once.

The new secret is generated (256 random bits, printed once, stored as its
SHA-256 digest), unless --secret-stdin is given: then a secret chosen by a
person, of 16 to 512 characters, is read from standard input and stored
with argon2id.

Prints the new secret's ID, and the client's secrets with their expiry.
Secrets that have already expired are removed. A client has at most 8
secrets. The file is replaced atomically; a running gateway uses the new
secret once it has re-read the clients file.
`,
		Example: `  $ caddy oauth client rotate-secret --clients clients.json --id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6
  $ caddy oauth client rotate-secret --clients clients.json --id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --retire-old-after 168h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, id, err := clientFlags(cmd)
			if err != nil {
				return err
			}
			fromStdin, _ := cmd.Flags().GetBool("secret-stdin")
			retireAfter, _ := cmd.Flags().GetDuration("retire-old-after")
			retire := cmd.Flags().Changed("retire-old-after")
			if retire && retireAfter < 0 {
				return usagef("--retire-old-after must not be negative")
			}
			secret, stored, err := newSecret(cmd, fromStdin)
			if err != nil {
				return err
			}
			f, client, err := loadClient(path, id)
			if err != nil {
				return err
			}
			now := commandNow()
			stored.Created = now.UTC().Format(time.RFC3339)
			removed := client.RemoveExpiredSecrets(now)
			sid, err := client.AddSecret(stored)
			if errors.Is(err, clients.ErrTooManySecrets) {
				return fmt.Errorf("%w; retire one first with \"caddy oauth client retire-secret\"", err)
			} else if err != nil {
				return err
			}
			if retire {
				client.ExpireSecretsAt(sid, now.Add(retireAfter))
			}
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}

			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Secret %s added to client %q (%s) in %s.\n", sid, client.Name, client.ID, path)
			if !fromStdin {
				fmt.Fprintf(out, "client_secret: %s\n", secret)
			}
			fmt.Fprintf(out, "secret_id:     %s\n", sid)
			if fromStdin {
				fmt.Fprintln(out, "The secret read from standard input is stored as an argon2id hash; it is not shown.")
			} else {
				fmt.Fprintln(out, "The secret is shown only this once; only its hash is stored.")
			}
			if len(removed) > 0 {
				fmt.Fprintf(out, "Removed expired secrets: %s.\n", strings.Join(removed, ", "))
			}
			printSecrets(out, client, sid, now)
			if !retire && len(client.Secrets) > 1 {
				fmt.Fprintf(out, "The other secrets keep working. Once the sender uses the new one, retire the old with\n"+
					"  caddy oauth client retire-secret --clients %s --id %s --secret-id <ID>\n", path, client.ID)
			}
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("id", "", "the client ID (required)")
	c.Flags().Bool("secret-stdin", false, secretStdinHelp)
	c.Flags().Duration("retire-old-after", 0, "make the client's other secrets expire this long from now (e.g. 168h); without it they stay valid until retired")
	return c
}

func clientRetireSecretCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "retire-secret --clients <file> --id <client ID> --secret-id <secret ID>",
		Short: "Removes one secret of a client, which then no longer authenticates",
		Long: `
Removes a secret from a client: the last step of a rotation. The secret's
ID was printed by rotate-secret, which also lists every secret of the
client.

The client's last unexpired secret cannot be removed, since that would lock
the client out without saying so: add a new secret first (rotate-secret),
or, to stop the client from getting tokens, disable it ("caddy oauth
client disable", which sets "disabled": true on its entry).

The file is replaced atomically; a running gateway refuses the secret once
it has re-read the clients file.
`,
		Example: `  $ caddy oauth client retire-secret --clients clients.json --id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --secret-id 1c0ffee5`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, id, err := clientFlags(cmd)
			if err != nil {
				return err
			}
			sid, _ := cmd.Flags().GetString("secret-id")
			if sid == "" {
				return usagef("--secret-id is required (the ID printed by \"caddy oauth client rotate-secret\")")
			}
			f, client, err := loadClient(path, id)
			if err != nil {
				return err
			}
			now := commandNow()
			switch err := client.RetireSecret(sid, now); {
			case errors.Is(err, clients.ErrNoSuchSecret):
				return fmt.Errorf("%w; its secrets are: %s", err, secretIDs(client))
			case errors.Is(err, clients.ErrLastSecret):
				return fmt.Errorf("%w: removing it would leave the client no way to authenticate. "+
					"Add a new secret first (caddy oauth client rotate-secret --clients %s --id %s), "+
					"or, to stop the client from getting tokens, disable it (caddy oauth client disable --clients %s --id %s, "+
					"which sets \"disabled\": true on its entry)",
					err, path, client.ID, path, client.ID)
			case err != nil:
				return err
			}
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Secret %s of client %q (%s) retired in %s.\n", sid, client.Name, client.ID, path)
			printSecrets(out, client, "", now)
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("id", "", "the client ID (required)")
	c.Flags().String("secret-id", "", "the ID of the secret to remove (required)")
	return c
}

// newSecret returns a generated secret and its SHA-256 form, or, with
// fromStdin, the argon2id form of the secret on standard input (and no
// secret to print).
func newSecret(cmd *cobra.Command, fromStdin bool) (string, clients.Secret, error) {
	if !fromStdin {
		secret, stored := clients.NewSecret()
		return secret, stored, nil
	}
	secret, err := readChosenSecret(cmd.InOrStdin())
	if err != nil {
		return "", clients.Secret{}, err
	}
	stored, err := clients.HashChosenSecret(secret)
	if err != nil {
		return "", clients.Secret{}, fmt.Errorf("--secret-stdin: %w (leave out --secret-stdin to have a 256-bit secret generated)", err)
	}
	return "", stored, nil
}

// readChosenSecret reads a secret from r, dropping one trailing newline
// ("\n" or "\r\n"). It reads at most a little more than the longest
// secret allowed, so that a wrong input (a large file) fails at once.
func readChosenSecret(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, clients.MaxSecretLen+3))
	if err != nil {
		return "", fmt.Errorf("--secret-stdin: reading standard input: %w", err)
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", errors.New("--secret-stdin: no secret on standard input")
	}
	return s, nil
}

// printSecrets lists the client's secrets: ID, algorithm, created,
// expiry.
func printSecrets(out io.Writer, c *clients.Client, newID string, now time.Time) {
	fmt.Fprintf(out, "Secrets of client %s:\n", c.ID)
	for i := range c.Secrets {
		s := &c.Secrets[i]
		id, created, expires := s.ID, s.Created, "never"
		if id == "" {
			id = "(no id)"
		}
		if created == "" {
			created = "unknown"
		}
		if s.Expires != "" {
			expires = s.Expires
			if s.Expired(now) {
				expires += " (expired)"
			}
		}
		note := ""
		if s.ID == newID && newID != "" {
			note = "  (new)"
		}
		fmt.Fprintf(out, "  %-8s  %-8s  created %-20s  expires %s%s\n", id, s.Algorithm(), created, expires, note)
	}
}

// secretIDs lists the IDs of the client's secrets, for error messages.
func secretIDs(c *clients.Client) string {
	ids := make([]string, len(c.Secrets))
	for i, s := range c.Secrets {
		ids[i] = s.ID
		if ids[i] == "" {
			ids[i] = "(one without an id: rotate-secret gives it one)"
		}
	}
	return strings.Join(ids, ", ")
}
