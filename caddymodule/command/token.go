package command

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/weburl"
)

// maxTokenResponse bounds what the token command reads from a server. A
// token response is a few kilobytes even with a large RSA-signed JWT.
const maxTokenResponse = 64 << 10

func tokenCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "token --url <token endpoint> --client-id <ID> [--scope <roles>] [--audience <aud>] [--format jwt|opaque] [--secret-env <VAR> | --secret-stdin] [--quiet] [--timeout <duration>]",
		Short: "Fetches an access token as a sender does, and shows what it holds",
		Long: `
Fetches an access token with the client-credentials grant, the way Postman
does with "Client Credentials" and "Send as Basic Auth header": a POST to
the token endpoint with HTTP Basic authentication (client ID and secret as
they are) and the form body grant_type=client_credentials, plus scope,
audience and token_format when given. Works with any OAuth 2.0 token
endpoint, not only oauthgate's.

The secret is never a flag (flags show in "ps" and in shell history): it is
read from the environment variable named by --secret-env (default
OAUTH_CLIENT_SECRET), or, with --secret-stdin, from standard input (one
trailing newline is dropped). It is not printed.

Output on standard output, success only:

  line 1        the access token, alone
  token_type:   as the server sent them
  expires_in:
  scope:
  header and claims of a JWT, as indented JSON: decoded, NOT verified
                (an opaque token has nothing to decode)

so "caddy oauth token ... | head -1" is the token; --quiet prints only
that line.

The URL must be https, except on a loopback host (localhost, 127.0.0.0/8,
::1), and hold no user info or fragment. Redirects are not followed: the
credentials go to the URL given and nowhere else.

Exit status: 0 with a token; 1 when the server refused (the RFC 6749 error
and its description are printed), answered something that is not a token,
or could not be reached; 2 when the command was called wrongly, including
no secret in the environment variable.
`,
		Example: `  $ export OAUTH_CLIENT_SECRET=...
  $ caddy oauth token --url https://gateway.example.com/oauth2/api/v1/token --client-id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6
  $ TOKEN=$(caddy oauth token --url https://gateway.example.com/oauth2/api/v1/token --client-id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --quiet)
  $ pass show sender | caddy oauth token --url https://gateway.example.com/oauth2/api/v1/token --client-id 3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6 --secret-stdin --scope Orders.send`,
		Args: cobra.NoArgs,
		RunE: runToken,
	}
	f := c.Flags()
	f.String("url", "", "the token endpoint, e.g. https://gateway.example.com/oauth2/api/v1/token (required)")
	f.String("client-id", "", "the client ID (required)")
	f.String("scope", "", "the roles to ask for, space-separated; default: all the client holds")
	f.String("audience", "", "the resource server the token is for; default: the client's first audience")
	f.String("format", "", "token_format to ask for: jwt or opaque; default: the server's (jwt for oauthgate)")
	f.String("secret-env", "OAUTH_CLIENT_SECRET", "the environment variable that holds the client secret")
	f.Bool("secret-stdin", false, "read the client secret from standard input instead (one trailing newline is dropped)")
	f.Bool("quiet", false, "print only the access token")
	f.Duration("timeout", 30*time.Second, "give up when the server has not answered within this time")
	return c
}

func runToken(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags()
	rawURL, _ := fl.GetString("url")
	id, _ := fl.GetString("client-id")
	format, _ := fl.GetString("format")
	env, _ := fl.GetString("secret-env")
	fromStdin, _ := fl.GetBool("secret-stdin")
	timeout, _ := fl.GetDuration("timeout")
	switch {
	case rawURL == "":
		return usagef("--url is required (the token endpoint, e.g. https://gateway.example.com/oauth2/api/v1/token)")
	case id == "":
		return usagef("--client-id is required")
	case format != "" && format != "jwt" && format != "opaque":
		return usagef("--format %q: want jwt or opaque", format)
	case timeout <= 0:
		return usagef("--timeout must be positive")
	case fromStdin && fl.Changed("secret-env"):
		return usagef("--secret-env and --secret-stdin exclude each other")
	}
	endpoint, err := checkTokenURL(rawURL)
	if err != nil {
		return err
	}
	var secret string
	if fromStdin {
		if secret, err = readChosenSecret(cmd.InOrStdin()); err != nil {
			return err
		}
		if len(secret) > clients.MaxSecretLen {
			return fmt.Errorf("--secret-stdin: the secret is longer than %d bytes", clients.MaxSecretLen)
		}
	} else if secret = os.Getenv(env); secret == "" {
		return usagef("no client secret: $%s is unset or empty; set it, or pipe the secret into --secret-stdin "+
			"(a secret is never a flag: flags show in ps and in shell history)", env)
	}

	form := url.Values{"grant_type": {"client_credentials"}}
	for param, flag := range map[string]string{"scope": "scope", "audience": "audience", "token_format": "format"} {
		if v, _ := fl.GetString(flag); v != "" {
			form.Set(param, v)
		}
	}
	tok, err := requestToken(cmd.Context(), endpoint, id, secret, form, timeout)
	if err != nil {
		return err
	}

	out := cmd.OutOrStdout()
	fmt.Fprintln(out, tok.AccessToken)
	if quiet, _ := fl.GetBool("quiet"); quiet {
		return nil
	}
	fmt.Fprintf(out, "token_type: %s\n", printable(tok.TokenType))
	if tok.ExpiresIn != nil {
		fmt.Fprintf(out, "expires_in: %s\n", printable(fmt.Sprint(tok.ExpiresIn)))
	}
	if tok.Scope != "" {
		fmt.Fprintf(out, "scope:      %s\n", printable(tok.Scope))
	}
	if strings.Count(tok.AccessToken, ".") != 2 {
		fmt.Fprintln(out, "The token is opaque: nothing to decode.")
		return nil
	}
	header, claims, err := decodeJWT(tok.AccessToken)
	if err != nil {
		fmt.Fprintf(out, "The token is not a JWT (%v): nothing to decode.\n", err)
		return nil
	}
	fmt.Fprintf(out, "header (decoded, not verified):\n%s\nclaims (decoded, not verified):\n%s\n", header, claims)
	return nil
}

// checkTokenURL refuses a URL that would send the secret in clear over a
// network, or that carries credentials of its own.
func checkTokenURL(raw string) (string, error) {
	u, err := weburl.Check(raw)
	switch {
	case errors.Is(err, weburl.ErrUserInfo):
		return "", usagef("--url must not hold credentials: give the client ID with --client-id and the secret in $OAUTH_CLIENT_SECRET or on standard input")
	case errors.Is(err, weburl.ErrCleartext):
		return "", usagef("--url %q: plain http would send the client secret unencrypted; use https (http is accepted only on a loopback address)", raw)
	case err != nil:
		return "", usagef("--url: %v; want an absolute https URL of the token endpoint", err)
	}
	return u.String(), nil
}

// requestToken sends the token request and returns the response of a
// server that issued a token. Every other outcome is an error that says
// what the server answered.
func requestToken(ctx context.Context, endpoint, id, secret string, form url.Values, timeout time.Duration) (*authserver.TokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(id, secret)
	hc := &http.Client{
		Timeout: timeout,
		// A redirect would take the credentials to another URL, or the
		// same over plain http: let the operator decide.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return nil, fmt.Errorf("no answer from %s within %v (--timeout)", endpoint, timeout)
			}
			err = ue.Err
		}
		return nil, fmt.Errorf("requesting a token from %s: %w", endpoint, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxTokenResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", endpoint, err)
	}
	if len(body) > maxTokenResponse {
		return nil, fmt.Errorf("the answer of %s (HTTP %d) is larger than %d bytes: not a token response", endpoint, res.StatusCode, maxTokenResponse)
	}
	status := fmt.Sprintf("HTTP %d", res.StatusCode)

	if res.StatusCode >= 300 && res.StatusCode < 400 {
		return nil, fmt.Errorf("%s redirects (%s) to %s; redirects are not followed, so that the credentials go nowhere else: "+
			"give the URL you mean with --url", endpoint, status, printable(res.Header.Get("Location")))
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
			URI         string `json:"error_uri"`
		}
		if json.Unmarshal(body, &e) != nil || e.Code == "" {
			return nil, fmt.Errorf("%s answered %s, not an OAuth error response: %s", endpoint, status, snippet(body))
		}
		msg := "the token endpoint refused: " + printable(e.Code)
		if e.Description != "" {
			msg += ": " + printable(e.Description)
		}
		msg += " (" + status
		if e.URI != "" {
			msg += ", see " + printable(e.URI)
		}
		if ra := res.Header.Get("Retry-After"); ra != "" {
			msg += ", Retry-After: " + printable(ra)
		}
		return nil, errors.New(msg + ")")
	}

	var tok authserver.TokenResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&tok); err != nil {
		msg := fmt.Sprintf("%s answered %s but not with a token response (%v)", endpoint, status, err)
		if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
			// A login page or the like is worth showing; a JSON object
			// that answered 200 may hold a usable token, so is not.
			msg += ": " + snippet(body)
		}
		return nil, errors.New(msg)
	}
	if tok.AccessToken == "" {
		return nil, fmt.Errorf("%s answered %s without an access_token: %s", endpoint, status, snippet(body))
	}
	// The token is printed as it is, on a line of its own: it must not be
	// able to carry a newline or a terminal escape with it.
	for _, r := range tok.AccessToken {
		if r <= ' ' || r >= 0x7f {
			return nil, fmt.Errorf("%s answered with an access_token that has characters no token has (%q)", endpoint, r)
		}
	}
	return &tok, nil
}

// decodeJWT returns the header and claims of a compact JWT as indented
// JSON, without verifying anything: the command shows what a token says,
// only the gateway can tell whether that is true.
func decodeJWT(token string) (header, claims []byte, err error) {
	parts := strings.Split(token, ".")
	var out [2][]byte
	for i, name := range []string{"header", "claims"} {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return nil, nil, fmt.Errorf("its %s is not base64url", name)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return nil, nil, fmt.Errorf("its %s is not JSON", name)
		}
		for _, r := range buf.String() {
			if r != '\n' && !unicode.IsPrint(r) {
				return nil, nil, fmt.Errorf("its %s has characters that cannot be shown", name)
			}
		}
		out[i] = buf.Bytes()
	}
	return out[0], out[1], nil
}
