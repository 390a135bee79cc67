package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// The commands' clock in these tests.
var cmdT0 = time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)

// runCommand runs cmd with ARGS in process, at cmdT0, with stdin as
// standard input, and returns what it printed. Errors come back as the
// command returned them, before withExitStatus hands them to Caddy.
func runCommand(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, error) {
	t.Helper()
	orig := commandNow
	commandNow = func() time.Time { return cmdT0 }
	defer func() { commandNow = orig }()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage = true
	err := cmd.Execute()
	return out.String(), err
}

func TestOAuthCommands_EveryCommandHasUsageShortLongAndExample(t *testing.T) {
	root := &cobra.Command{Use: "oauth"}
	root.AddCommand(oauthSubcommands()...)
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Use == "" || sub.Short == "" || strings.TrimSpace(sub.Long) == "" || sub.Example == "" {
				t.Errorf("%q: want Use, Short, Long and Example; have Use %q, Short %q, Long %d bytes, Example %q",
					sub.CommandPath(), sub.Use, sub.Short, len(sub.Long), sub.Example)
			}
			walk(sub)
		}
	}
	walk(root)
	if len(root.Commands()) < 3 {
		t.Errorf("oauth has %d subcommands, want client, token and keys", len(root.Commands()))
	}
}

// TestCaddyMain is not a test of its own: TestOAuthCommands_ExitStatus
// runs this test binary as the caddy command, through caddycmd.Main.
func TestCaddyMain(t *testing.T) {
	args := os.Getenv("OAUTHGATE_TEST_CADDY_ARGS")
	if args == "" {
		t.Skip("runs only as the caddy process of TestOAuthCommands_ExitStatus")
	}
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatal(err)
	}
	os.Args = append([]string{"caddy"}, argv...)
	caddycmd.Main()
	os.Exit(0)
}

func TestOAuthCommands_ExitStatus(t *testing.T) {
	path, f := clientFile(t)
	id := f.Clients[0].ID
	tests := map[string]struct {
		args   []string
		status int
		stderr string
	}{
		"a listing":                        {[]string{"client", "list", "--clients", path}, 0, ""},
		"help":                             {[]string{"client", "remove", "--help"}, 0, ""},
		"an unknown flag":                  {[]string{"client", "list", "--clients", path, "--bogus"}, 2, "unknown flag: --bogus"},
		"a bad flag value":                 {[]string{"client", "add", "--clients", path, "--name", "x", "--lifetime", "soon"}, 2, "invalid argument"},
		"a missing required flag":          {[]string{"client", "list"}, 2, "--clients is required (see caddy oauth client list --help)"},
		"a stray argument":                 {[]string{"client", "show", "--clients", path, "--id", id, "extra"}, 2, "unknown command"},
		"a misspelt subcommand":            {[]string{"client", "lsit"}, 2, "unknown command"},
		"a misspelt command":               {[]string{"tokn"}, 2, "unknown command"},
		"an unknown client":                {[]string{"client", "show", "--clients", path, "--id", "nobody"}, 1, `no client with id`},
		"remove without --yes":             {[]string{"client", "remove", "--clients", path, "--id", id}, 1, "nothing removed"},
		"token without a secret":           {[]string{"token", "--url", "https://gw.example/token", "--client-id", id, "--secret-env", "OAUTHGATE_TEST_UNSET"}, 2, "no client secret"},
		"keys with nothing at the address": {[]string{"keys", "list", "--address", closedAddress(t)}, 1, "connection refused"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			argv, _ := json.Marshal(append([]string{"oauth"}, tc.args...))
			cmd := exec.Command(os.Args[0], "-test.run=^TestCaddyMain$")
			cmd.Env = append(os.Environ(), "OAUTHGATE_TEST_CADDY_ARGS="+string(argv))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			if exit, ok := errors.AsType[*exec.ExitError](err); ok {
				status = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", status, tc.status, &stdout, &stderr)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr does not say %q:\n%s", tc.stderr, &stderr)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		if after, _ := clients.ReadFile(path); after == nil || len(after.Clients) != len(f.Clients) {
			t.Error("a command that failed changed the clients file")
		}
	})
}

// closedAddress is a 127.0.0.1 address where nothing listens.
func closedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
