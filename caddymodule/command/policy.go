package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/atomicfile"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/filewatch"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
)

// errRefused is a policy explain whose request would be refused: exit
// status 1, with nothing more to print than the explanation.
var errRefused = errors.New("the request would be refused")

func policyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy <command>",
		Short: "Checks a policy file and explains its decisions",
		Long: `
Checks a policy file for mistakes and explains how it decides a request.
A running gateway re-reads the policy file by itself within a second or
two of a change; run "policy check" before saving, so that what it reads
is what you meant.
`,
		Example: `  $ caddy oauth policy check policy.yaml
  $ caddy oauth policy explain --policy policy.yaml --client 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --method GET --path /http/status`,
		RunE: groupRunE,
	}
	c.AddCommand(policyCheckCommand(), policyExplainCommand())
	return c
}

func policyCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check <file>",
		Short: "Parses a policy file and reports what it probably gets wrong",
		Long: `
Parses the policy file as the gateway would. A file that does not parse
is reported as file:line: message; the gateway would refuse it and keep
its last good policy.

A file that parses is also checked for what is probably a mistake, each
reported as file:line: message:

  - a role a subject holds that no rule requires (often a typo on one side),
    and a role a rule requires that no subject holds;
  - a subject whose roles satisfy no rule that needs a token;
  - a rule that can never match, because the guard refuses its path before
    any rule (//, . or .. segments, ;, a backslash), or because more
    specific rules take every request it names;
  - a /x/* rule whose own path /x falls to a broader rule that asks for
    other roles, none, or not the same "when" condition (both lines are
    named): write /x* to cover both;
  - a "when" condition that reads a claim the gateway's own tokens never
    carry (they have iss, sub, client_id, aud, iat, exp, jti, scope).
    Such a claim can only come from an external issuer, whose claims the
    policy file does not know: the finding is a reminder, not an error;
  - a limit whose quota is smaller than its rate allows in the quota's
    hour or day (it says when a caller at full rate uses it up), or that
    its rate can never reach.

Exit status: 0 when the file parses and nothing was found, 1 otherwise.
`,
		Example: `  $ caddy oauth policy check /etc/oauthgate/policy.yaml
  /etc/oauthgate/policy.yaml: OK, 12 rules, 40 subjects`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			p, err := policy.ReadFile(path)
			if err != nil {
				return err
			}
			findings := policy.Check(p)
			out := cmd.OutOrStdout()
			for _, f := range findings {
				fmt.Fprintf(out, "%s:%d: %s\n", path, f.Line, printable(f.Message))
			}
			if len(findings) > 0 {
				return fmt.Errorf("%s: %d finding(s)", path, len(findings))
			}
			fmt.Fprintf(out, "%s: OK, %d rules, %d subjects\n", path, p.RuleCount(), p.SubjectCount())
			return nil
		},
	}
}

func policyExplainCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "explain --policy <file> (--client <ID> | --subject <subject>) --method <method> --path <path> [--host <host>] [--scope <roles>] [--claim <name=value>]... [--header <Name=value>]... [--query <query>] [--remote-addr <IP>]",
		Short: "Explains how the policy decides one request",
		Long: `
Decides a request as the guard would for a valid token of the client (or
subject), and prints the rule that decides it, the roles it requires, the
roles the subject holds, the decision and why, and for an allowed request
the limits (the rule's, the subject's) that count it. The counts
themselves live in the running gateways: explain cannot say whether a
caller is over a limit now.

--scope stands for a token requested with that scope (space-separated
roles); without it, the token carries every role the subject holds.

A rule's "when" condition is evaluated for a token of the gateway's own
(claims sub, client_id and scope), to which --claim adds claims or
replaces them (--claim tenant=acme, --claim 'level=3', --claim
'groups=["a","b"]'), and for the request the flags describe (--header,
--query, --remote-addr; the time is now). The output says whether it is
true, false, or cannot be evaluated (a claim or header not given).

Exit status: 0 when the request would reach the backend (allowed, public,
or refused by a report_only rule), 1 when it would be refused or the file
cannot be read, 2 when the command is called wrongly.
`,
		Example: `  $ caddy oauth policy explain --policy policy.yaml --client 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --method POST --path /http/orders/1
  request:  POST /http/orders/1
  rule:     line 4 (paths /http/orders*; methods POST)
  requires: any of Orders.send
  subject:  oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 holds [ESBMessaging.send]
  decision: deny: the subject does not hold any of Orders.send`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			path, _ := fl.GetString("policy")
			clientID, _ := fl.GetString("client")
			subject, _ := fl.GetString("subject")
			method, _ := fl.GetString("method")
			reqPath, _ := fl.GetString("path")
			host, _ := fl.GetString("host")
			switch {
			case path == "":
				return usagef("--policy is required")
			case (clientID == "") == (subject == ""):
				return usagef("give one of --client and --subject")
			case method == "" || reqPath == "":
				return usagef("--method and --path are required")
			}
			if clientID != "" {
				subject = clients.SubjectPrefix + clientID
			}
			var scope []string
			if fl.Changed("scope") {
				s, _ := fl.GetString("scope")
				scope = append([]string{}, strings.Fields(s)...) // empty, not nil: a token with no roles
			}
			p, err := policy.ReadFile(path)
			if err != nil {
				return err
			}
			in, err := explainInput(cmd, subject, clientID, scope, p)
			if err != nil {
				return err
			}
			x := policy.ExplainInput(p, strings.ToUpper(method), host, reqPath, subject, scope, in)
			for _, line := range strings.SplitAfter(strings.TrimSuffix(x.String(), "\n"), "\n") {
				fmt.Fprintln(cmd.OutOrStdout(), printable(strings.TrimSuffix(line, "\n")))
			}
			if x.Decision == "deny" {
				return errRefused
			}
			return nil
		},
	}
	c.Flags().String("policy", "", "path of the policy file (required)")
	c.Flags().String("client", "", "the client ID; its subject is oauth_client_<ID>")
	c.Flags().String("subject", "", "the token subject, e.g. one of an external issuer")
	c.Flags().String("method", "", "the request method (required)")
	c.Flags().String("path", "", "the request path (required)")
	c.Flags().String("host", "", "the request host, for rules that name hosts")
	c.Flags().String("scope", "", "the token's scope, space-separated roles; default: every role the subject holds")
	c.Flags().StringArray("claim", nil, "a token claim for conditions, name=value; a value that parses as JSON is taken as JSON (repeatable)")
	c.Flags().StringArray("header", nil, "a request header for conditions, Name=value (repeatable)")
	c.Flags().String("query", "", "the request's query string for conditions, e.g. a=1&b=2")
	c.Flags().String("remote-addr", "", "the client's IP address for conditions")
	return c
}

// explainInput is what a rule's condition sees in policy explain: a
// token of the gateway's own with the subject, client ID and scope,
// whatever --claim adds or replaces, and the request flags.
func explainInput(cmd *cobra.Command, subject, clientID string, scope []string, p *policy.Policy) (*policy.Input, error) {
	fl := cmd.Flags()
	claims := policy.MapClaims{"sub": subject}
	if clientID != "" {
		claims["client_id"] = clientID
	}
	if scope == nil {
		scope = p.Roles(subject) // a token requested without scope carries them all
	}
	claims["scope"] = scope
	list, _ := fl.GetStringArray("claim")
	for _, kv := range list {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, usagef("--claim %q: want name=value", kv)
		}
		var v any
		if json.Unmarshal([]byte(value), &v) != nil {
			v = value // not JSON: the text itself
		}
		claims[name] = v
	}
	header := http.Header{}
	headers, _ := fl.GetStringArray("header")
	for _, kv := range headers {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, usagef("--header %q: want Name=value", kv)
		}
		header.Add(name, value) // canonical names, as a server has them
	}
	in := &policy.Input{Claims: claims, Request: policy.Request{Header: header}}
	in.Request.RawQuery, _ = fl.GetString("query")
	in.Request.RemoteAddr, _ = fl.GetString("remote-addr")
	return in, nil
}

func roleCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "role <command>",
		Short: "Grants and revokes roles in a policy file",
		Long: `
Grants a role to a subject, or revokes it, in the policy file's
"subjects": SAP's Security > Authorizations. Only that one role in that one
line changes: comments, order and every other line stay as they were, and
a result that would not parse is never written. The file is replaced
atomically, and a running gateway applies the change within a second or
two, to tokens already issued too.

The subject of an OAuth client is oauth_client_<client ID>.
`,
		Example: `  $ caddy oauth role grant --policy policy.yaml oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 Orders.send
  $ caddy oauth role revoke --policy policy.yaml oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 Orders.send`,
		RunE: groupRunE,
	}
	c.AddCommand(roleEditCommand("grant", policy.Grant), roleEditCommand("revoke", policy.Revoke))
	return c
}

func roleEditCommand(verb string, edit func(data []byte, subject, role string) ([]byte, error)) *cobra.Command {
	c := &cobra.Command{
		Use:   verb + " --policy <file> <subject> <role>",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + "s a role of a subject in the policy file",
		Long: `
` + map[string]string{
			"grant":  "Adds the role to the subject's roles, adding the subject if it is new.\nGranting a role the subject already holds changes nothing.",
			"revoke": "Removes the role from the subject's roles. Revoking a role the subject\ndoes not hold is an error (exit status 1).",
		}[verb] + `
Comments and layout are kept; the file is replaced atomically.
`,
		Example: "  $ caddy oauth role " + verb + " --policy policy.yaml oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 ESBMessaging.send",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _ := cmd.Flags().GetString("policy")
			if path == "" {
				return usagef("--policy is required")
			}
			subject, role := args[0], args[1]
			st, err := os.Stat(path)
			if err != nil {
				return err
			}
			data, err := filewatch.Read(path, policy.MaxFileSize)
			if err != nil {
				return err
			}
			out, err := edit(data, subject, role)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			w := cmd.OutOrStdout()
			if string(out) == string(data) {
				fmt.Fprintf(w, "%s already holds %s in %s; nothing changed.\n", printable(subject), printable(role), path)
				return nil
			}
			if err := atomicfile.Write(path, out, st.Mode().Perm()); err != nil {
				return err
			}
			what := map[string]string{"grant": "granted to", "revoke": "revoked from"}[verb]
			fmt.Fprintf(w, "Role %s %s %s in %s.\n", printable(role), what, printable(subject), path)
			return nil
		},
	}
	c.Flags().String("policy", "", "path of the policy file (required)")
	return c
}
