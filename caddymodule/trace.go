package caddymodule

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/guard"
)

// The span attributes the guard and the token endpoint add to the span
// of Caddy's tracing handler. They say what the metrics say, from the
// same labels, so that every reason the guard counts is in the span too:
// bounded values only, and never a token, a secret, an Authorization
// header, a query string or a body. OpenTelemetry's conventions have no
// names for OAuth decisions, hence a namespace of our own. error.type is
// not set: on an HTTP server span it marks a failure of the server (a
// 5xx, which otelhttp already flags), and a caller refused is the
// gateway doing its job.
const (
	attrDecision = attribute.Key("oauthgate.decision")  // allow, deny, would_deny, public, preflight, csrf_fetch
	attrReason   = attribute.Key("oauthgate.reason")    // ok, missing_token, or the refusal's code
	attrRuleLine = attribute.Key("oauthgate.rule.line") // the deciding policy rule
	attrRuleFile = attribute.Key("oauthgate.rule.file") // the policy file it is in
	attrClientID = attribute.Key("oauthgate.client_id") // the verified or authenticated client

	attrTokenOutcome   = attribute.Key("oauthgate.token.outcome") // issued, refused
	attrTokenGrantType = attribute.Key("oauthgate.token.grant_type")
	attrTokenFormat    = attribute.Key("oauthgate.token.format") // jwt, opaque
	attrTokenError     = attribute.Key("oauthgate.token.error")  // the RFC 6749 code
)

// traceDecision adds the guard's decision, as counted under l, to the
// request's span. Without tracing the span is not recording, and nothing
// is built.
func traceDecision(ctx context.Context, l decisionLabels, d *guard.Decision, policyFile string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, attrDecision.String(l.outcome), attrReason.String(l.reason))
	if l.rule != 0 {
		attrs = append(attrs, attrRuleLine.Int(l.rule), attrRuleFile.String(policyFile))
	}
	// Set only once the token verified: an unverified token's claims are
	// whatever its sender wrote.
	if d.ClientID != "" {
		attrs = append(attrs, attrClientID.String(d.ClientID))
	}
	span.SetAttributes(attrs...)
}

// traceToken adds what the token endpoint did to the request's span.
func traceToken(ctx context.Context, o *authserver.TokenOutcome) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	if o.Error == "" {
		attrs = append(attrs, attrTokenOutcome.String("issued"), attrTokenFormat.String(o.Format))
	} else {
		attrs = append(attrs, attrTokenOutcome.String("refused"), attrTokenError.String(o.Error))
	}
	if o.GrantType != "" {
		attrs = append(attrs, attrTokenGrantType.String(o.GrantType))
	}
	if o.ClientID != "" {
		attrs = append(attrs, attrClientID.String(o.ClientID))
	}
	span.SetAttributes(attrs...)
}
