package command

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// maxKeysResponse bounds what the keys commands read from the admin API;
// a key set has a handful of keys.
const maxKeysResponse = 1 << 20

const addressHelp = "the address of Caddy's admin API, as in \"caddy reload --address\"; default: $CADDY_ADMIN or localhost:2019"

// keysCommand is `caddy oauth keys`, with its subcommands.
func keysCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys <command>",
		Short: "Lists or rotates the signing keys of a running Caddy",
		Long: `
Lists or rotates the keys a running gateway signs tokens with, through
Caddy's admin API (the endpoints /oauth/keys and /oauth/keys/rotate). The
keys live in Caddy's storage, so every instance sharing that storage uses
the same keys.
`,
		Example: `  $ caddy oauth keys list
  $ caddy oauth keys rotate --address localhost:2020`,
		RunE: groupRunE,
	}
	c.AddCommand(keysListCommand(), keysRotateCommand())
	return c
}

const keysColumnsHelp = `
Each key is listed with:

  kid        its key ID, the "kid" of the tokens it signs
  alg        its signing algorithm
  state      next: published in the JWK Set ahead of signing
             signing: signs the tokens issued now
             retired: no longer signs; published until its tokens expire
  activates  when it starts (or started) signing
  retires    when it stops (or stopped) signing
  expires    when it leaves the JWK Set

For machine output, ask the admin API directly:
curl localhost:2019/oauth/keys.
`

func keysListCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list [--address <admin address>]",
		Short: "Lists the signing keys and their schedule",
		Long: `
Lists the signing keys of the running gateway, newest first.
` + keysColumnsHelp,
		Example: `  $ caddy oauth keys list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, err := adminAddress(cmd)
			if err != nil {
				return err
			}
			list, err := adminKeys(addr, http.MethodGet, "/oauth/keys")
			if err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), list)
		},
	}
	c.Flags().String("address", "", addressHelp)
	return c
}

func keysRotateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate [--now] [--address <admin address>]",
		Short: "Publishes a new signing key",
		Long: `
Publishes a new signing key. It signs after an hour, so that every
verifier that caches the JWK Set knows it before the first token it signed
reaches them; the old key stops signing then, and stays in the JWK Set
until the tokens it signed have expired. If a key published ahead is
already waiting to sign, nothing changes.

--now replaces the signing key at once, for a key that may have been
compromised: the new key signs from now on and a key waiting to sign is
dropped. Tokens the old key signed stay valid until they expire. Other
verifiers that cached the JWK Set (it is served with max-age=300) may
refuse the new tokens for up to 5 minutes.

Every instance sharing the storage accepts the new key's tokens at once,
and signs with it within a minute (or when it activates, without --now).
` + keysColumnsHelp,
		Example: `  $ caddy oauth keys rotate
  $ caddy oauth keys rotate --now`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, err := adminAddress(cmd)
			if err != nil {
				return err
			}
			now, _ := cmd.Flags().GetBool("now")
			before, err := adminKeys(addr, http.MethodGet, "/oauth/keys")
			if err != nil {
				return err
			}
			uri := "/oauth/keys/rotate"
			if now {
				uri += "?now=1"
			}
			after, err := adminKeys(addr, http.MethodPost, uri)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var added []keys.Description
			for _, k := range after {
				if !slices.ContainsFunc(before, func(b keys.Description) bool { return b.ID == k.ID }) {
					added = append(added, k)
				}
			}
			switch {
			case len(added) == 0:
				fmt.Fprintln(out, "No new key: a key published ahead is already waiting to sign (see below); --now replaces the signing key at once.")
			case now:
				fmt.Fprintf(out, "Key %s signs from now on. Tokens signed by the previous key stay valid until they expire.\n", added[0].ID)
			default:
				fmt.Fprintf(out, "Key %s is published and signs from %s.\n", added[0].ID, cmp.Or(added[0].Activates, "(unknown)"))
			}
			return printKeys(out, after)
		},
	}
	c.Flags().Bool("now", false, "make the new key sign at once (for a compromised key)")
	c.Flags().String("address", "", addressHelp)
	return c
}

// adminAddress is --address, or Caddy's default admin address, found the
// way Caddy's own commands find it.
func adminAddress(cmd *cobra.Command) (string, error) {
	addr, _ := cmd.Flags().GetString("address")
	return caddycmd.DetermineAdminAPIAddress(addr, nil, "", "")
}

// adminKeys calls one of the admin API's key endpoints (served by
// caddymodule/adminapi.go) and decodes the keys it answers with.
func adminKeys(addr, method, uri string) ([]keys.Description, error) {
	res, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s on Caddy's admin API at %s: %w", method, uri, addr, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxKeysResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, uri, err)
	}
	var list []keys.Description
	if len(body) > maxKeysResponse || json.Unmarshal(body, &list) != nil {
		return nil, fmt.Errorf("%s %s at %s: the answer is not a list of keys: %s", method, uri, addr, snippet(body))
	}
	return list, nil
}

// printKeys prints keys as a table. The admin API lists them newest
// first, so the keys above the signing one wait to sign and those below
// it have retired; no clock is needed to tell.
func printKeys(out io.Writer, list []keys.Description) error {
	signing := slices.IndexFunc(list, func(k keys.Description) bool { return k.Signing })
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tACTIVATES\tRETIRES\tEXPIRES")
	for i, k := range list {
		state := "published"
		switch {
		case signing < 0:
		case i < signing:
			state = "next"
		case i == signing:
			state = "signing"
		default:
			state = "retired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(k.ID), printable(k.Algorithm), state,
			printable(cmp.Or(k.Activates, "-")), printable(cmp.Or(k.Retires, "-")), printable(cmp.Or(k.Expires, "-")))
	}
	return tw.Flush()
}
