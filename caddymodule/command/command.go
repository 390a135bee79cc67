// Package command is the operator's CLI, `caddy oauth …`: it manages the
// clients and policy files, fetches tokens as a sender does, and lists or
// rotates a running gateway's keys.
//
// The commands run in a process of their own, not in the gateway: they
// change the files a running gateway watches, or ask it through Caddy's
// admin API. So they need the domain packages (clients, policy, keys,
// weburl), never package caddymodule; caddycmd, with which they register,
// is their one import of Caddy.
package command

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oauth",
		Usage: "<command> [flags]",
		Short: "Manages oauthgate clients, tokens and signing keys",
		Long: `
Commands for the operator of an oauthgate gateway:

  client   register, list, disable and remove OAuth clients and their secrets
           in the clients file (a running gateway applies a change within
           half a second)
  token    fetch an access token from a token endpoint, as a sender does
  keys     list or rotate the signing keys of a running Caddy
  policy   check a policy file, and explain how it decides a request
  role     grant or revoke a subject's role in the policy file, keeping
           its comments (a running gateway applies it within seconds)
  state    make the key that seals a fleet's state in Redis

Exit status: 0 on success; 1 when the operation failed or was refused; 2
when the command was called wrongly (an unknown command or flag, a missing
required flag, a stray argument). Errors are printed through Caddy's log.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.RunE = groupRunE
			cmd.AddCommand(oauthSubcommands()...)
			withExitStatus(cmd)
		},
	})
}

// oauthSubcommands are the commands under `caddy oauth`. A new command
// goes into this list; withExitStatus gives it the exit statuses.
func oauthSubcommands() []*cobra.Command {
	return []*cobra.Command{
		clientCommand(),
		tokenCommand(),
		keysCommand(),
		policyCommand(),
		roleCommand(),
		stateCommand(),
	}
}

// commandNow is the clock of the commands; tests replace it.
var commandNow = time.Now

// usageError is a command called wrongly: exit status 2, so that a script
// can tell a typo in its own command line from a refused operation (1).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// withExitStatus makes every error of the commands under root reach
// Caddy's main with the exit status it deserves (see usageError): errors
// of flags and arguments, which cobra reports before RunE runs, as well
// as those RunE returns.
func withExitStatus(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitWith(c, usageError{err})
	})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return exitWith(c, usageError{err})
				}
				return nil
			}
		}
		if run := c.RunE; run != nil {
			c.RunE = func(c *cobra.Command, a []string) error { return exitWith(c, run(c, a)) }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// exitWith hands err on to Caddy's main with exit status 1, or 2 for a
// usageError. caddycmd's error type that carries a status is unexported;
// WrapCommandFuncForCobra is the one way to make it, and it prints the
// error through Caddy's log as Caddy's own commands do.
func exitWith(c *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	status := 1
	if errors.As(err, new(usageError)) {
		status = 2
		err = fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	}
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return status, err })(c, nil)
}

// groupRunE runs a command that only holds subcommands. Without it, cobra
// answers a misspelt subcommand with the help text and exit status 0.
func groupRunE(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return c.Help()
	}
	return usagef("unknown command %q for %q", args[0], c.CommandPath())
}

// printable returns s unchanged if every character shows as itself, and
// quoted otherwise: text from a file or a server must not be able to move
// the cursor or fake a line of output on the operator's terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// snippet is the start of a response body, for an error message.
func snippet(body []byte) string {
	const n = 200
	if len(body) > n {
		return printable(string(body[:n])) + "…"
	}
	return printable(string(body))
}
