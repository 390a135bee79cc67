package command

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/filewatch"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
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
file and applies a change within half a second.
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

func clientAddCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "add --clients <file> --name <name> [--description <text>] [--lifetime <duration>] [--audience <aud>]... [--secret-stdin | --jwks <file> | --jwks-uri <url> | --tls-subject <dn> | --tls-san <type:name> | --certificate <file>...] [--bound-tokens]",
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

With --jwks or --jwks-uri the client has no secret: it authenticates with
private_key_jwt (RFC 7523), a short-lived JWT signed by one of its keys.
--jwks names a file holding its public keys as a JWK Set, copied into the
clients file (each key with a "kid"; a private key is refused); --jwks-uri
is where the client publishes that set (https, or http to a loopback host),
fetched by the gateway when needed.

The file is replaced atomically: a crash leaves the old file or the new one.
` + clientCertHelp,
		Example: `  $ caddy oauth client add --clients clients.json --name order-sender --description "ERP order feed"
  $ printf '%s' "$SECRET" | caddy oauth client add --clients clients.json --name legacy --secret-stdin
  $ caddy oauth client add --clients clients.json --name erp --jwks erp-public.jwks.json
  $ caddy oauth client add --clients clients.json --name erp --jwks-uri https://erp.example/jwks.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("clients")
			name, _ := cmd.Flags().GetString("name")
			desc, _ := cmd.Flags().GetString("description")
			lifetime, _ := cmd.Flags().GetDuration("lifetime")
			audiences, _ := cmd.Flags().GetStringArray("audience")
			fromStdin, _ := cmd.Flags().GetBool("secret-stdin")
			jwksFile, _ := cmd.Flags().GetString("jwks")
			jwksURI, _ := cmd.Flags().GetString("jwks-uri")
			keyed := jwksFile != "" || jwksURI != ""
			switch {
			case path == "":
				return usagef("--clients is required")
			case name == "":
				return usagef("--name is required")
			case lifetime < 0:
				return usagef("--lifetime must not be negative (0: valid until the next token)")
			case jwksFile != "" && jwksURI != "":
				return usagef("--jwks and --jwks-uri: give the client's keys one way")
			case keyed && fromStdin:
				return usagef("--secret-stdin and --jwks/--jwks-uri: a client with keys has no secret")
			}
			var client clients.Client
			byCert, err := applyCertFlags(cmd, &client)
			switch {
			case err != nil:
				return err
			case byCert && keyed:
				return usagef("--jwks/--jwks-uri and a certificate: give the client one kind of credential")
			}
			client.JWKSURI = jwksURI
			// The credential first: a bad one must not leave a changed file.
			// A client with keys or a certificate gets no secret, unless
			// chosen (certificate only).
			if jwksFile != "" {
				data, err := filewatch.Read(jwksFile, issuers.MaxDocumentSize)
				if err != nil {
					return err
				}
				client.JWKS = json.RawMessage(data)
			}
			var secret string
			var stored clients.Secret
			if !byCert && !keyed || fromStdin {
				if secret, stored, err = newSecret(cmd, fromStdin); err != nil {
					return err
				}
			}
			f, err := clients.ReadFileOrEmpty(path)
			if err != nil {
				return err
			}
			client.ID, client.Name, client.Description = clients.NewID(), name, desc
			client.TokenLifetime, client.Audiences = lifetime.String(), audiences
			if stored.Hash != "" {
				stored.Created = commandNow().UTC().Format(time.RFC3339)
				client.Secrets = []clients.Secret{stored}
			}
			f.Clients = append(f.Clients, client)
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client %q added to %s.\n", name, path)
			fmt.Fprintf(out, "client_id:     %s\n", client.ID)
			if secret != "" {
				fmt.Fprintf(out, "client_secret: %s\n", secret)
			}
			fmt.Fprintf(out, "subject:       %s\n", client.Subject())
			if m := f.Find(client.ID).CertificateMethod(); m != "" { // validated by WriteFile
				fmt.Fprintf(out, "auth method:   %s; the tokens it fetches by its certificate are bound to it\n", m)
			}
			switch {
			case keyed:
				fmt.Fprintln(out, "The client authenticates with private_key_jwt: a JWT signed by one of its keys.")
			case stored.Hash == "":
				fmt.Fprintln(out, "The client authenticates by its certificate alone: it sends its client_id, no secret.")
			case fromStdin:
				fmt.Fprintln(out, "The secret read from standard input is stored as an argon2id hash; it is not shown.")
			default:
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
	c.Flags().String("jwks", "", "a file with the client's public keys (a JWK Set), for private_key_jwt instead of a secret")
	c.Flags().String("jwks-uri", "", "where the client publishes its public keys (a JWK Set), for private_key_jwt instead of a secret")
	certFlags(c)
	return c
}

func clientListCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list --clients <file> [--json]",
		Short: "Lists the clients of a clients file, without their secrets",
		Long: `
Lists every client of the clients file, in the order of the file: its ID,
name, whether it is disabled, its token lifetime, the audiences it may ask
for, and how many secrets it has with their expiry. Secrets and their
hashes are never shown.

--json prints the same as a JSON array, for scripts: per client "id",
"name", "description", "subject", "disabled", "token_lifetime" (a Go
duration; "0s": valid until the client requests a new token), "audiences"
(empty: the gateway's own audience) and "secrets" (per secret "id",
"algorithm", "created", "expires", "expired"; never a hash).
`,
		Example: `  $ caddy oauth client list --clients clients.json
  $ caddy oauth client list --clients clients.json --json | jq -r '.[] | select(.disabled) | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("clients")
			asJSON, _ := cmd.Flags().GetBool("json")
			if path == "" {
				return usagef("--clients is required")
			}
			f, err := clients.ReadFile(path)
			if err != nil {
				return err
			}
			now := commandNow()
			out := cmd.OutOrStdout()
			if asJSON {
				views := make([]clientView, len(f.Clients))
				for i := range f.Clients {
					views[i] = viewOf(&f.Clients[i], now)
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(views)
			}
			if len(f.Clients) == 0 {
				fmt.Fprintf(out, "No clients in %s.\n", path)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tDISABLED\tLIFETIME\tAUDIENCES\tSECRETS")
			for i := range f.Clients {
				c := &f.Clients[i]
				auds := "(gateway's)"
				if len(c.Audiences) > 0 {
					auds = printable(strings.Join(c.Audiences, ","))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, printable(c.Name), yesNo(c.Disabled),
					lifetimeText(c), auds, secretsSummary(c, now))
			}
			return tw.Flush()
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().Bool("json", false, "print a JSON array instead of a table")
	return c
}

func clientShowCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "show --clients <file> --id <client ID>",
		Short: "Shows one client in detail, without its secrets",
		Long: `
Shows one client of the clients file: ID, name, description, token
subject, whether it is disabled, token lifetime, audiences, and each of its
secrets with its ID, hash algorithm, creation and expiry. Secrets and their
hashes are never shown.
`,
		Example: `  $ caddy oauth client show --clients clients.json --id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, id, err := clientFlags(cmd)
			if err != nil {
				return err
			}
			_, c, err := loadClient(path, id)
			if err != nil {
				return err
			}
			auds := "(none: the gateway's audience)"
			if len(c.Audiences) > 0 {
				auds = printable(strings.Join(c.Audiences, ", "))
			}
			disabled := "no"
			if c.Disabled {
				disabled = "yes: it gets invalid_client, and the guard refuses its tokens"
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "client_id:      %s\n", c.ID)
			fmt.Fprintf(out, "name:           %s\n", printable(c.Name))
			fmt.Fprintf(out, "description:    %s\n", printable(c.Description))
			fmt.Fprintf(out, "subject:        %s\n", c.Subject())
			fmt.Fprintf(out, "disabled:       %s\n", disabled)
			fmt.Fprintf(out, "token_lifetime: %s\n", lifetimeText(c))
			fmt.Fprintf(out, "audiences:      %s\n", auds)
			if ids := c.KeyIDs(); len(ids) > 0 {
				fmt.Fprintf(out, "keys (jwks):    %s\n", printable(strings.Join(ids, ", ")))
			}
			if c.JWKSURI != "" {
				fmt.Fprintf(out, "jwks_uri:       %s\n", printable(c.JWKSURI))
			}
			if cert := certificateText(c); cert != "" {
				fmt.Fprintf(out, "certificate:    %s\n", cert)
			}
			printSecrets(out, c, "", commandNow())
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("id", "", "the client ID (required)")
	return c
}

// clientSetDisabledCommand is `client disable` or, with disable false,
// `client enable`.
func clientSetDisabledCommand(disable bool) *cobra.Command {
	verb, done, effect := "enable", "enabled",
		"it can obtain tokens again, and its tokens that have not expired are accepted again"
	short := "Lets a disabled client obtain tokens again"
	if disable {
		verb, done, effect = "disable", "disabled",
			"it gets invalid_client from the token endpoint, and the guard refuses the tokens it was issued"
		short = "Stops a client from obtaining tokens and makes the guard refuse its tokens"
	}
	c := &cobra.Command{
		Use:   verb + " --clients <file> --id <client ID>",
		Short: short,
		Long: fmt.Sprintf(`
Sets "disabled": %t on a client in the clients file. Within a second or
two, once the gateway has re-read the file, %s.

Nothing else about the client changes: its secrets, lifetime and audiences
stay as they were, and its subject keeps its roles in the policy file. A
client that is already %s is left alone, and the file is not written.
`, disable, effect, done),
		Example: fmt.Sprintf(`  $ caddy oauth client %s --clients clients.json --id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6`, verb),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, id, err := clientFlags(cmd)
			if err != nil {
				return err
			}
			f, c, err := loadClient(path, id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if c.Disabled == disable {
				fmt.Fprintf(out, "Client %q (%s) is already %s in %s; nothing changed.\n", c.Name, c.ID, done, path)
				return nil
			}
			c.Disabled = disable
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}
			fmt.Fprintf(out, "Client %q (%s) %s in %s.\n", c.Name, c.ID, done, path)
			fmt.Fprintf(out, "Once the gateway has re-read the file (within half a second), %s.\n", effect)
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("id", "", "the client ID (required)")
	return c
}

func clientRemoveCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "remove --clients <file> --id <client ID> --yes",
		Short: "Removes a client and its secrets from the clients file",
		Long: `
Removes a client, with all its secrets, from the clients file. Once the
gateway has re-read the file (within half a second), the client's credentials no
longer authenticate and the guard refuses the tokens it was issued. This
cannot be undone: the client would need a new ID and secret, so consider
"caddy oauth client disable" instead.

Without --yes nothing is removed: the command says what it would remove
and exits with status 1.

The client's subject, oauth_client_<client ID>, may still hold roles under
"subjects" in the policy file; remove it there too.
`,
		Example: `  $ caddy oauth client remove --clients clients.json --id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, id, err := clientFlags(cmd)
			if err != nil {
				return err
			}
			yes, _ := cmd.Flags().GetBool("yes")
			f, c, err := loadClient(path, id)
			if err != nil {
				return err
			}
			name, subject, secrets := c.Name, c.Subject(), len(c.Secrets) // %q escapes what does not print
			if !yes {
				return fmt.Errorf("nothing removed: this would remove client %q (%s) and its %d secret(s) from %s, "+
					"and the guard would refuse its tokens; run again with --yes to remove it, "+
					"or disable it instead (caddy oauth client disable)", name, id, secrets, path)
			}
			f.Clients = slices.DeleteFunc(f.Clients, func(c clients.Client) bool { return c.ID == id })
			if err := clients.WriteFile(path, f); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client %q (%s) and its %d secret(s) removed from %s.\n", name, id, secrets, path)
			fmt.Fprintln(out, "Once the gateway has re-read the file (within half a second), the guard refuses its tokens.")
			fmt.Fprintf(out, "Its subject %s may still hold roles under \"subjects\" in the policy file: remove it there too.\n", subject)
			return nil
		},
	}
	c.Flags().String("clients", "", "path of the clients file (required)")
	c.Flags().String("id", "", "the client ID (required)")
	c.Flags().Bool("yes", false, "remove the client; without it, only say what would be removed")
	return c
}

// clientFlags returns the --clients and --id flags, which every command
// on one client requires.
func clientFlags(cmd *cobra.Command) (path, id string, err error) {
	path, _ = cmd.Flags().GetString("clients")
	id, _ = cmd.Flags().GetString("id")
	switch {
	case path == "":
		return "", "", usagef("--clients is required")
	case id == "":
		return "", "", usagef("--id is required (the client ID; \"caddy oauth client list\" shows them)")
	}
	return path, id, nil
}

// loadClient reads the clients file and finds the client with the ID.
func loadClient(path, id string) (*clients.File, *clients.Client, error) {
	f, err := clients.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	c := f.Find(id)
	if c == nil {
		return nil, nil, fmt.Errorf("no client with id %q in %s", id, path)
	}
	return f, c, nil
}

// clientView is what the commands reveal of a client: everything but the
// secret hashes, which it has no field for.
type clientView struct {
	ID            string       `json:"id"`
	Name          string       `json:"name"`
	Description   string       `json:"description"`
	Subject       string       `json:"subject"`
	Disabled      bool         `json:"disabled"`
	TokenLifetime string       `json:"token_lifetime"`
	Audiences     []string     `json:"audiences"`
	Secrets       []secretView `json:"secrets"`
	// Keys are the kids of an inline JWK Set; JWKSURI where the set is.
	Keys    []string `json:"keys,omitempty"`
	JWKSURI string   `json:"jwks_uri,omitempty"`
}

type secretView struct {
	ID        string `json:"id"`
	Algorithm string `json:"algorithm"`
	Created   string `json:"created"`
	Expires   string `json:"expires"`
	Expired   bool   `json:"expired"`
}

func viewOf(c *clients.Client, now time.Time) clientView {
	v := clientView{ID: c.ID, Name: c.Name, Description: c.Description, Subject: c.Subject(),
		Disabled: c.Disabled, TokenLifetime: c.Lifetime().String(),
		Audiences: append([]string{}, c.Audiences...), Secrets: make([]secretView, len(c.Secrets)),
		Keys: c.KeyIDs(), JWKSURI: c.JWKSURI}
	for i := range c.Secrets {
		s := &c.Secrets[i]
		v.Secrets[i] = secretView{ID: s.ID, Algorithm: s.Algorithm(), Created: s.Created, Expires: s.Expires, Expired: s.Expired(now)}
	}
	return v
}

// secretsSummary is the number of the client's secrets and each one's
// expiry: "2 (never, until 2030-06-08T08:00:00Z)".
func secretsSummary(c *clients.Client, now time.Time) string {
	ends := make([]string, len(c.Secrets))
	for i := range c.Secrets {
		s := &c.Secrets[i]
		switch {
		case s.Expires == "":
			ends[i] = "never"
		case s.Expired(now):
			ends[i] = "expired " + s.Expires
		default:
			ends[i] = "until " + s.Expires
		}
	}
	if len(c.Secrets) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d (%s)", len(c.Secrets), strings.Join(ends, ", "))
}

func lifetimeText(c *clients.Client) string {
	if c.Lifetime() == 0 {
		return "0 (until the next token)"
	}
	return c.Lifetime().String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
