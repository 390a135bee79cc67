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

const secretStdinHelp = "read a secret chosen by a person from standard input (16 to 512 characters; one trailing newline is dropped) and store it with argon2id, instead of generating one"

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
