package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("oauth", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("oauth_server", parseServer)
	httpcaddyfile.RegisterDirective("oauth_guard", parseGuard)
	// The token endpoint must answer before any guard, and both run
	// before the handlers that serve or proxy: a plain site block needs no
	// route block or global order.
	httpcaddyfile.RegisterDirectiveOrder("oauth_server", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("oauth_guard", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption sets up the oauth app:
//
//	oauth {
//		issuer   <url>
//		audience <aud>
//		clients  <path>
//		policy   <path>
//		leeway   <duration>
//		max_token_lifetime <duration>
//		signing_algorithm ES256|EdDSA|RS256|PS256
//		key_rotation <duration>
//		state redis <url> {
//			username          <user>
//			password          <password>
//			sentinels         <host:port>...
//			master_name       <name>
//			sentinel_password <password>
//			tls_ca_file       <path>
//			prefix            <prefix>
//			sealing_keys_file <path> | sealing_keys_env <variable>
//		}
//		trust <issuer> {
//			jwks_url         <url> | discovery
//			audience         <aud>
//			algorithms       <alg>...
//			token_types      <typ>...
//			leeway           <duration>
//			roles_claim      <claim>
//			role_match       exact|suffix
//			refresh_interval <duration>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the oauth global option may appear only once")
	}
	app := new(App)
	d.Next() // the option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		key := d.Val()
		if key == "state" {
			if app.State != nil {
				return nil, d.Err("state may appear only once")
			}
			st, err := parseState(d)
			if err != nil {
				return nil, err
			}
			app.State = st
			continue
		}
		if key == "client_certificates" {
			if app.ClientCertificates != nil {
				return nil, d.Err("client_certificates may appear only once")
			}
			cc, err := parseClientCertificates(d)
			if err != nil {
				return nil, err
			}
			app.ClientCertificates = cc
			continue
		}
		if key == "trust" {
			t, err := parseTrust(d)
			if err != nil {
				return nil, err
			}
			app.TrustedIssuers = append(app.TrustedIssuers, t)
			continue
		}
		known, err := setOption(d, key,
			map[string]*string{"issuer": &app.Issuer, "audience": &app.Audience, "clients": &app.ClientsFile,
				"policy": &app.PolicyFile, "signing_algorithm": &app.SigningAlgorithm},
			map[string]*caddy.Duration{"leeway": &app.Leeway, "max_token_lifetime": &app.MaxTokenLifetime,
				"key_rotation": &app.KeyRotation})
		if err != nil {
			return nil, err
		}
		if !known {
			return nil, d.Errf("unknown oauth option %q", key)
		}
	}
	return httpcaddyfile.App{Name: "oauth", Value: caddyconfig.JSON(app, nil)}, nil
}

// setOption sets the option key, which takes exactly one argument, if
// strs or durs name it; it reports whether one did.
func setOption(d *caddyfile.Dispenser, key string, strs map[string]*string, durs map[string]*caddy.Duration) (bool, error) {
	s, isStr := strs[key]
	dur, isDur := durs[key]
	if !isStr && !isDur {
		return false, nil
	}
	var val string
	if !d.Args(&val) || d.NextArg() {
		return true, d.Errf("%s takes exactly one argument", key)
	}
	if isStr {
		*s = val
		return true, nil
	}
	v, err := caddy.ParseDuration(val)
	if err != nil {
		return true, d.Errf("%s: %v", key, err)
	}
	*dur = caddy.Duration(v)
	return true, nil
}

// parseState reads the "state redis <url> { … }" block.
func parseState(d *caddyfile.Dispenser) (*StateConfig, error) {
	var engine string
	r := new(RedisState)
	if !d.Args(&engine, &r.URL) || d.NextArg() || engine != "redis" {
		return nil, d.Err("state takes the engine, redis, and its URL (redis://host:port/db or rediss://...), then a block")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		if key == "sentinels" {
			if r.Sentinels = d.RemainingArgs(); len(r.Sentinels) == 0 {
				return nil, d.Err("sentinels takes at least one host:port")
			}
			continue
		}
		known, err := setOption(d, key,
			map[string]*string{"username": &r.Username, "password": &r.Password, "master_name": &r.MasterName,
				"sentinel_password": &r.SentinelPassword, "tls_ca_file": &r.TLSCAFile, "prefix": &r.Prefix,
				"sealing_keys_file": &r.SealingKeysFile, "sealing_keys_env": &r.SealingKeysEnv},
			nil)
		if err != nil {
			return nil, err
		}
		if !known {
			return nil, d.Errf("unknown state option %q", key)
		}
	}
	return &StateConfig{Redis: r}, nil
}

// parseClientCertificates reads the "client_certificates { … }" block:
//
//	client_certificates {
//		trusted_ca_file <pem file>...   # repeatable
//		header          <name>
//	}
func parseClientCertificates(d *caddyfile.Dispenser) (*ClientCertificates, error) {
	cc := new(ClientCertificates)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "trusted_ca_file":
			files := d.RemainingArgs()
			if len(files) == 0 {
				return nil, d.Err("trusted_ca_file takes at least one PEM file")
			}
			cc.TrustedCAFiles = append(cc.TrustedCAFiles, files...)
		case "header":
			if !d.Args(&cc.Header) || d.NextArg() {
				return nil, d.Err("header takes exactly one header name")
			}
		default:
			return nil, d.Errf("unknown client_certificates option %q", key)
		}
	}
	return cc, nil
}

// parseTrust reads one "trust <issuer> { … }" block.
func parseTrust(d *caddyfile.Dispenser) (TrustedIssuer, error) {
	var t TrustedIssuer
	if !d.Args(&t.Issuer) || d.NextArg() {
		return t, d.Err("trust takes the issuer (its tokens' exact iss) and a block")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		switch key {
		case "discovery":
			if d.NextArg() {
				return t, d.Err("discovery takes no argument")
			}
			t.Discovery = true
			continue
		case "algorithms", "token_types":
			vals := d.RemainingArgs()
			if len(vals) == 0 {
				return t, d.Errf("%s takes at least one value", key)
			}
			if key == "algorithms" {
				t.Algorithms = vals
			} else {
				t.TokenTypes = vals
			}
			continue
		}
		known, err := setOption(d, key,
			map[string]*string{"jwks_url": &t.JWKSURL, "audience": &t.Audience, "roles_claim": &t.RolesClaim,
				"role_match": &t.RoleMatch},
			map[string]*caddy.Duration{"leeway": &t.Leeway, "refresh_interval": &t.RefreshInterval})
		if err != nil {
			return t, err
		}
		if !known {
			return t, d.Errf("unknown trust option %q", key)
		}
	}
	return t, nil
}

func parseServer(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(OAuthServer)
	return s, s.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler:
//
//	oauth_server [<matcher>] {
//		realm                  <name>
//		max_assertion_lifetime <duration>
//		dpop_algorithms        <alg>...
//		dpop_max_age           <duration>
//	}
func (s *OAuthServer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "realm":
			if !d.Args(&s.Realm) || d.NextArg() {
				return d.ArgErr()
			}
		case "max_assertion_lifetime":
			v, err := positiveDuration(d)
			if err != nil {
				return err
			}
			s.MaxAssertionLifetime = v
		case "dpop_algorithms":
			if s.DPoPAlgorithms = d.RemainingArgs(); len(s.DPoPAlgorithms) == 0 {
				return d.ArgErr()
			}
		case "dpop_max_age":
			v, err := positiveDuration(d)
			if err != nil {
				return err
			}
			s.DPoPMaxAge = v
		default:
			return d.Errf("unknown oauth_server option %q", d.Val())
		}
	}
	return nil
}

// positiveDuration reads the one argument of the option at d, a
// positive duration.
func positiveDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	key := d.Val()
	var val string
	if !d.Args(&val) || d.NextArg() {
		return 0, d.Errf("%s takes exactly one argument", key)
	}
	v, err := caddy.ParseDuration(val)
	if err != nil || v <= 0 {
		return 0, d.Errf("%s: want a positive duration, got %q", key, val)
	}
	return caddy.Duration(v), nil
}

// parseGuard sets up the guard on its matcher and, unmatched, on the RFC
// 9728 metadata path, so that the document every challenge points to is
// served without a route of its own.
func parseGuard(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	g := new(OAuthGuard)
	if err := g.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	metadata := caddy.ModuleMap{"path": caddyconfig.JSON(caddyhttp.MatchPath{guard.ResourceMetadataPath}, nil)}
	return append(h.NewRoute(metadata, g), h.NewRoute(matcherSet, g)...), nil
}

// UnmarshalCaddyfile sets up the handler:
//
//	oauth_guard [<matcher>] {
//		realm              <name>
//		audience           <aud>
//		max_token_size     <bytes>
//		token_cache        <tokens> | off
//		identity_headers   off | {
//			client_id <header>
//			subject   <header>
//			roles     <header>
//			scope     <header>
//		}
//		keep_authorization
//		token_query        <param>
//		token_cookie       <name>
//		allow_preflight
//		report_only
//		csrf_token_lifetime <duration>
//		dpop_algorithms    <alg>...
//		dpop_max_age       <duration>
//		dpop_nonce
//		external_url       <scheme://host[:port]>
//	}
func (g *OAuthGuard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		key := d.Val()
		switch key {
		case "keep_authorization", "allow_preflight", "report_only", "dpop_nonce":
			if d.NextArg() {
				return d.Errf("%s takes no argument", key)
			}
			switch key {
			case "keep_authorization":
				g.KeepAuthorization = true
			case "allow_preflight":
				g.AllowPreflight = true
			case "dpop_nonce":
				g.DPoPNonce = true
			default:
				g.ReportOnly = true
			}
			continue
		case "identity_headers":
			if err := g.unmarshalIdentityHeaders(d); err != nil {
				return err
			}
			continue
		case "dpop_algorithms":
			if g.DPoPAlgorithms = d.RemainingArgs(); len(g.DPoPAlgorithms) == 0 {
				return d.ArgErr()
			}
			continue
		case "dpop_max_age":
			v, err := positiveDuration(d)
			if err != nil {
				return err
			}
			g.DPoPMaxAge = v
			continue
		}
		var val string
		if !d.Args(&val) || d.NextArg() {
			return d.Errf("%s takes exactly one argument", key)
		}
		switch key {
		case "realm":
			g.Realm = val
		case "audience":
			g.Audience = val
		case "token_query":
			g.TokenQuery = val
		case "token_cookie":
			g.TokenCookie = val
		case "external_url":
			g.ExternalURL = val
		case "token_cache":
			if val == "off" {
				g.TokenCache = -1
				break
			}
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return d.Errf("token_cache: want a positive number of tokens or off, got %q", val)
			}
			g.TokenCache = n
		case "max_token_size":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return d.Errf("max_token_size: want a positive number of bytes, got %q", val)
			}
			g.MaxTokenSize = n
		case "csrf_token_lifetime":
			v, err := caddy.ParseDuration(val)
			if err != nil || v <= 0 {
				return d.Errf("csrf_token_lifetime: want a positive duration, got %q", val)
			}
			g.CSRFTokenLifetime = caddy.Duration(v)
		default:
			return d.Errf("unknown oauth_guard option %q", key)
		}
	}
	return nil
}

// unmarshalIdentityHeaders reads "identity_headers off" or a block of
// field-to-header lines; fields left out of a block are not set.
func (g *OAuthGuard) unmarshalIdentityHeaders(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Err("identity_headers takes 'off' or a block")
		}
	}
	// Every field named, empty when off: an empty map would vanish from
	// the JSON (omitempty) and bring the defaults back.
	g.IdentityHeaders = make(map[string]string, len(guard.IdentityFields))
	for _, what := range guard.IdentityFields {
		g.IdentityHeaders[what] = ""
	}
	if d.Val() == "off" {
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		what := d.Val()
		var name string
		if !d.Args(&name) || d.NextArg() {
			return d.Errf("identity_headers: %s takes exactly one header name", what)
		}
		if err := guard.CheckIdentityHeader(what, name); err != nil {
			return d.WrapErr(err)
		}
		g.IdentityHeaders[what] = name
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*OAuthServer)(nil)
	_ caddyfile.Unmarshaler = (*OAuthGuard)(nil)
)
