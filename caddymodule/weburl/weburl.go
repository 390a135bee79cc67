// Package weburl decides whether a URL is fit to send credentials to or
// to fetch keys from: one rule for the issuer, the JWKS and discovery URLs
// of trusted issuers, and the token command's --url, so that they cannot
// drift apart.
//
// Such a URL is an absolute http or https URL of a host, with no user
// info (a password in a URL ends up in logs, configs and shell history)
// and no fragment (a client never sends one, so it can only be a mistake),
// and it is https unless its host is loopback: whatever crosses a network
// in clear can be read or changed on the way.
package weburl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// ErrUserInfo is a URL with a user name or password. Its message does
// not repeat the URL, which holds the secret.
var ErrUserInfo = errors.New("a URL must not contain credentials")

// ErrCleartext is a plain http URL of a host that is not loopback.
var ErrCleartext = errors.New("must be https (http only for a loopback host: localhost, 127.0.0.0/8 or ::1)")

// IsLoopback reports whether host, as url.URL.Hostname returns it, is a
// loopback IP literal (127.0.0.0/8, ::1) or the name localhost. Traffic to
// them never leaves the machine (the reasoning of RFC 8252 §8.3); other
// names are not resolved, since what a name resolves to can change.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Parse returns raw as a URL if it is an absolute http or https URL of a
// host, without user info or fragment. It allows plain http to any host:
// see Cleartext and Check.
//
// Errors other than ErrUserInfo quote raw, so that they can stand alone.
func Parse(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, quoted below
		}
		return nil, fmt.Errorf("%q is not an absolute URL: %w", raw, err)
	}
	// Credentials first: the other errors quote the URL.
	switch {
	case u.User != nil:
		return nil, ErrUserInfo
	case !u.IsAbs() || u.Host == "":
		return nil, fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%q is not an http or https URL", raw)
	case u.Fragment != "":
		return nil, fmt.Errorf("%q has a fragment", raw)
	}
	return u, nil
}

// Cleartext reports whether requests to u would cross a network
// unencrypted: plain http to a host that is not loopback.
func Cleartext(u *url.URL) bool {
	return u.Scheme == "http" && !IsLoopback(u.Hostname())
}

// Check is Parse that also refuses a Cleartext URL, with ErrCleartext.
func Check(raw string) (*url.URL, error) {
	u, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if Cleartext(u) {
		return nil, fmt.Errorf("%q %w", raw, ErrCleartext)
	}
	return u, nil
}
